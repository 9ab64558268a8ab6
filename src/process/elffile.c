#include "elffile.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct elffile {
	int fd;
	Elf *elf;
	GElf_Ehdr ehdr;
	Elf_Scn *dynsym, *symtab;
};

int elffile_open(const char *path, struct elffile **out)
{
	struct elffile *ef;
	Elf_Scn *scn = NULL;
	int ret;

	*out = NULL;
	if (elf_version(EV_CURRENT) == EV_NONE)
		return -ENOSYS;
	ef = calloc(1, sizeof(*ef));
	if (!ef)
		return -ENOMEM;
	ef->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (ef->fd < 0) {
		ret = -errno;
		goto fail;
	}
	ef->elf = elf_begin(ef->fd, ELF_C_READ_MMAP, NULL);
	if (!ef->elf || elf_kind(ef->elf) != ELF_K_ELF || gelf_getclass(ef->elf) != ELFCLASS64 ||
	    !gelf_getehdr(ef->elf, &ef->ehdr)) {
		ret = -ENOEXEC;
		goto fail;
	}
	while ((scn = elf_nextscn(ef->elf, scn))) {
		GElf_Shdr sh;

		if (!gelf_getshdr(scn, &sh))
			continue;
		if (sh.sh_type == SHT_DYNSYM)
			ef->dynsym = scn;
		else if (sh.sh_type == SHT_SYMTAB)
			ef->symtab = scn;
	}
	*out = ef;
	return 0;
fail:
	elffile_close(ef);
	return ret;
}

void elffile_close(struct elffile *ef)
{
	if (!ef)
		return;
	if (ef->elf)
		elf_end(ef->elf);
	if (ef->fd >= 0)
		close(ef->fd);
	free(ef);
}

bool elffile_has_symtab(const struct elffile *ef)
{
	return ef->symtab != NULL;
}

bool elffile_is_exec(const struct elffile *ef)
{
	return ef->ehdr.e_type == ET_EXEC;
}

static int lookup_in(struct elffile *ef, Elf_Scn *scn, const char *name, uint64_t *vaddr,
		     uint64_t *size)
{
	Elf_Data *data;
	GElf_Shdr sh;
	size_t count;

	if (!scn || !gelf_getshdr(scn, &sh) || sh.sh_entsize == 0)
		return -ENOENT;
	data = elf_getdata(scn, NULL);
	if (!data)
		return -ENOENT;
	count = sh.sh_size / sh.sh_entsize;
	for (size_t i = 0; i < count; i++) {
		GElf_Sym sym;
		const char *n;

		if (!gelf_getsym(data, (int)i, &sym) || sym.st_shndx == SHN_UNDEF)
			continue;
		n = elf_strptr(ef->elf, sh.sh_link, sym.st_name);
		if (n && strcmp(n, name) == 0) {
			*vaddr = sym.st_value;
			if (size)
				*size = sym.st_size;
			return 0;
		}
	}
	return -ENOENT;
}

int elffile_symbol(struct elffile *ef, const char *name, uint64_t *vaddr, uint64_t *size)
{
	if (lookup_in(ef, ef->dynsym, name, vaddr, size) == 0)
		return 0;
	return lookup_in(ef, ef->symtab, name, vaddr, size);
}

int elffile_load_bias(const struct elffile *ef, uint64_t map_start, uint64_t map_offset,
		      uint64_t *bias)
{
	size_t nphdr;

	if (ef->ehdr.e_type == ET_EXEC) {
		*bias = 0;
		return 0;
	}
	if (elf_getphdrnum(ef->elf, &nphdr) != 0)
		return -ENOENT;
	for (size_t i = 0; i < nphdr; i++) {
		GElf_Phdr ph;
		uint64_t page_off;

		if (!gelf_getphdr(ef->elf, (int)i, &ph) || ph.p_type != PT_LOAD)
			continue;
		/* a mapping starts at the page holding the segment's first byte */
		page_off = ph.p_offset & ~(uint64_t)0xfff;
		if (map_offset < page_off || map_offset >= ph.p_offset + ph.p_filesz)
			continue;
		*bias = map_start - map_offset + ph.p_offset - ph.p_vaddr;
		return 0;
	}
	return -ENOENT;
}

int elffile_read_vaddr(struct elffile *ef, uint64_t vaddr, void *buf, size_t len)
{
	size_t nphdr;

	if (elf_getphdrnum(ef->elf, &nphdr) != 0)
		return -ENOENT;
	for (size_t i = 0; i < nphdr; i++) {
		GElf_Phdr ph;
		ssize_t n;

		if (!gelf_getphdr(ef->elf, (int)i, &ph) || ph.p_type != PT_LOAD)
			continue;
		if (vaddr < ph.p_vaddr || vaddr + len > ph.p_vaddr + ph.p_filesz ||
		    vaddr + len < vaddr)
			continue;
		n = pread(ef->fd, buf, len, (off_t)(ph.p_offset + (vaddr - ph.p_vaddr)));
		return n == (ssize_t)len ? 0 : -EIO;
	}
	return -ENOENT;
}

/* "N.M.P" with optional pre-release suffix (a1, b2, rc1) and "+", the whole NUL-terminated
 * string. */
static bool parse_version_string(const char *s, size_t n, int *major, int *minor)
{
	size_t i = 0;
	int parts[3] = {0, 0, 0};

	for (int k = 0; k < 3; k++) {
		size_t start = i;

		while (i < n && isdigit((unsigned char)s[i]) && i - start < 3)
			parts[k] = parts[k] * 10 + (s[i++] - '0');
		if (i == start)
			return false;
		if (k < 2) {
			if (i >= n || s[i] != '.')
				return false;
			i++;
		}
	}
	while (i < n && (isalnum((unsigned char)s[i]) || s[i] == '+'))
		i++;
	if (i != n || (parts[0] != 2 && parts[0] != 3))
		return false;
	*major = parts[0];
	*minor = parts[1];
	return true;
}

int elffile_find_version_string(struct elffile *ef, int want_major, int want_minor, char *out,
				size_t outlen)
{
	Elf_Scn *scn = NULL;
	size_t shstrndx;

	if (elf_getshdrstrndx(ef->elf, &shstrndx) != 0)
		return -ENOENT;
	while ((scn = elf_nextscn(ef->elf, scn))) {
		GElf_Shdr sh;
		Elf_Data *data;
		const char *name, *p, *end;

		if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_PROGBITS)
			continue;
		name = elf_strptr(ef->elf, shstrndx, sh.sh_name);
		if (!name || strcmp(name, ".rodata") != 0)
			continue;
		data = elf_getdata(scn, NULL);
		if (!data || !data->d_buf)
			continue;
		p = data->d_buf;
		end = p + data->d_size;
		while (p < end) {
			size_t len = strnlen(p, (size_t)(end - p));
			size_t from = len > 16 ? len - 16 : 0;

			/* A version is a short NUL-terminated string, but it may directly follow
			 * other data (no NUL before it): try each start in the tail that is not
			 * preceded by a digit or a dot. */
			for (size_t s = from; len >= 5 && s + 5 <= len; s++) {
				int major, minor;

				if (!isdigit((unsigned char)p[s]) ||
				    (s > 0 &&
				     (isdigit((unsigned char)p[s - 1]) || p[s - 1] == '.')))
					continue;
				if (parse_version_string(p + s, len - s, &major, &minor) &&
				    (want_major == 0 ||
				     (major == want_major && minor == want_minor))) {
					snprintf(out, outlen, "%.*s", (int)(len - s), p + s);
					return 0;
				}
			}
			p += len + 1;
		}
	}
	return -ENOENT;
}
