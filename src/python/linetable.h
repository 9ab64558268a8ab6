/* Line numbers from a code object's line table, for every format CPython 3.8+ uses.
 * Pure functions over bytes already copied out of the target: bounded, never trusting the input. */
#ifndef PMS_LINETABLE_H
#define PMS_LINETABLE_H

#include <stddef.h>
#include <stdint.h>

#include "pylayout.h"

/* The line of the instruction starting at byte offset `offset` in the bytecode (code units * 2).
 * Returns the line (>= 0), or -1 when the table says the instruction has no line, or the table is
 * malformed or does not cover offset. `kind` is an enum py_linetable_kind. */
int linetable_line(int kind, const uint8_t *table, size_t len, int firstlineno, int offset);

#endif
