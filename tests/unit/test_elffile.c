#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "elffile.h"

#define PYENV "/root/.pyenv/versions/"

static struct elffile *open_or_skip(const char *path)
{
	struct elffile *ef = NULL;

	if (access(path, R_OK) != 0)
		cr_skip_test("%s is not installed", path);
	cr_assert_eq(elffile_open(path, &ef), 0, "opening %s", path);
	return ef;
}

Test(elffile, dynsym_of_shared_libpython)
{
	struct elffile *ef = open_or_skip(PYENV "3.12.1/lib/libpython3.12.so.1.0");
	uint64_t vaddr = 0, size = 0, hex = 0;

	cr_assert_eq(elffile_symbol(ef, "_PyRuntime", &vaddr, &size), 0);
	cr_assert_neq(vaddr, 0);
	cr_assert_gt(size, 1000);
	cr_assert_eq(elffile_symbol(ef, "Py_Version", &vaddr, NULL), 0);
	cr_assert_eq(elffile_read_vaddr(ef, vaddr, &hex, sizeof(hex)), 0);
	cr_assert_eq(hex >> 16, 0x030c, "Py_Version %llx", (unsigned long long)hex);
	cr_assert(elffile_has_symtab(ef));
	cr_assert_not(elffile_is_exec(ef));
	/* a local TLS symbol lives in .symtab only */
	cr_assert_eq(elffile_symbol(ef, "_Py_tss_tstate", &vaddr, NULL), 0);
	cr_assert_eq(elffile_symbol(ef, "no_such_symbol_here", &vaddr, NULL), -ENOENT);
	elffile_close(ef);
}

Test(elffile, stripped_static_debian_python)
{
	struct elffile *ef = open_or_skip("/usr/bin/python3.11");
	uint64_t vaddr = 0, bias = 1;
	char text[32];

	cr_assert_not(elffile_has_symtab(ef));
	cr_assert(elffile_is_exec(ef));
	cr_assert_eq(elffile_symbol(ef, "_PyRuntime", &vaddr, NULL), 0);
	cr_assert_eq(elffile_symbol(ef, "PyCode_Type", &vaddr, NULL), 0);
	cr_assert_eq(elffile_load_bias(ef, 0x400000, 0, &bias), 0);
	cr_assert_eq(bias, 0, "non-PIE executables load at their link address");
	cr_assert_eq(elffile_find_version_string(ef, 3, 11, text, sizeof(text)), 0);
	cr_assert_eq(strncmp(text, "3.11.", 5), 0, "%s", text);
	elffile_close(ef);
}

Test(elffile, version_string_of_old_interpreters)
{
	struct elffile *ef = open_or_skip(PYENV "3.8.18/lib/libpython3.8.so.1.0");
	char text[32];

	cr_assert_eq(elffile_find_version_string(ef, 3, 8, text, sizeof(text)), 0);
	cr_assert_str_eq(text, "3.8.18");
	cr_assert_eq(elffile_find_version_string(ef, 3, 9, text, sizeof(text)), -ENOENT);
	elffile_close(ef);
}

Test(elffile, load_bias_of_a_shared_object)
{
	struct elffile *ef = open_or_skip(PYENV "3.12.1/lib/libpython3.12.so.1.0");
	uint64_t bias = 0;

	/* the first mapping (file offset 0) of a PIC library sits at its bias */
	cr_assert_eq(elffile_load_bias(ef, 0x7f0000000000ull, 0, &bias), 0);
	cr_assert_eq(bias, 0x7f0000000000ull);
	elffile_close(ef);
}

Test(elffile, not_elf)
{
	struct elffile *ef = NULL;
	char path[] = "/tmp/pymemspy-notelf-XXXXXX";
	int fd = mkstemp(path);

	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "#!/bin/sh\necho hi\n", 18), 18);
	close(fd);
	cr_assert_eq(elffile_open(path, &ef), -ENOEXEC);
	cr_assert_eq(elffile_open("/nonexistent/file", &ef), -ENOENT);
	unlink(path);
}
