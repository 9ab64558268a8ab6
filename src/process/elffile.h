/* An ELF file on disk (libelf): symbols from .dynsym and .symtab, segments, and initialised data
 * read by virtual address, so that facts can be taken from the file without touching the target. */
#ifndef PMS_ELFFILE_H
#define PMS_ELFFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct elffile;

/* Opens path. -ENOENT/-EACCES from open, -ENOEXEC when it is not a 64-bit ELF file. */
int elffile_open(const char *path, struct elffile **out);
void elffile_close(struct elffile *ef);

/* The address (st_value) and size of a symbol, looked up in .dynsym, then .symtab.
 * 0 or -ENOENT. */
int elffile_symbol(struct elffile *ef, const char *name, uint64_t *vaddr, uint64_t *size);

/* True when the file keeps a .symtab (not stripped). */
bool elffile_has_symtab(const struct elffile *ef);
/* True for ET_EXEC (non-PIE: addresses are absolute). */
bool elffile_is_exec(const struct elffile *ef);

/* The load bias of the file in a process, from one of its file mappings (start address and file
 * offset of that mapping): runtime address = bias + vaddr. 0 or -ENOENT when no PT_LOAD segment
 * covers that offset. */
int elffile_load_bias(const struct elffile *ef, uint64_t map_start, uint64_t map_offset,
		      uint64_t *bias);

/* Copies len bytes of initialised data at vaddr out of the file. -ENOENT when the range is not
 * backed by file contents (e.g. .bss). */
int elffile_read_vaddr(struct elffile *ef, uint64_t vaddr, void *buf, size_t len);

/* Looks in the read-only data for a CPython version string "3.N.M" (e.g. "3.10.13", "2.7.18")
 * whose major.minor equals want_major.want_minor, or any when want_major is 0. Writes it to out.
 * 0 or -ENOENT. */
int elffile_find_version_string(struct elffile *ef, int want_major, int want_minor, char *out,
				size_t outlen);

#endif
