#include "pycode.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "linetable.h"

#define PYCODE_DEFAULT_CAPACITY 4096
#define PYCODE_MAX_CHARS	4096	  /* longest name or path we read */
#define PYCODE_MAX_LINETABLE	(1 << 20) /* a bigger table is not a real code object */
#define PYCODE_MAX_CODE_SIZE	1024

/* The fields that would differ if the address were reused by another code object. */
struct pycode_key {
	uint64_t filename, name, qualname, linetable;
	int32_t firstlineno, argcount;
};

struct pycode_entry {
	uint64_t addr; /* 0: empty slot */
	struct pycode_key key;
	char *function, *file;
	uint8_t *linetable;
	size_t linetable_len;
	struct pycode_info info;
};

struct pycode_cache {
	struct pytarget *target;
	struct pycode_entry *slots;
	size_t capacity;
};

struct pycode_cache *pycode_cache_new(struct pytarget *t, size_t capacity)
{
	struct pycode_cache *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->target = t;
	c->capacity = capacity ? capacity : PYCODE_DEFAULT_CAPACITY;
	c->slots = calloc(c->capacity, sizeof(*c->slots));
	if (!c->slots) {
		free(c);
		return NULL;
	}
	return c;
}

static void entry_clear(struct pycode_entry *e)
{
	free(e->function);
	free(e->file);
	free(e->linetable);
	memset(e, 0, sizeof(*e));
}

void pycode_cache_free(struct pycode_cache *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->capacity; i++)
		entry_clear(&c->slots[i]);
	free(c->slots);
	free(c);
}

static size_t put_utf8(uint32_t cp, char *out)
{
	if (cp >= 0xd800 && cp <= 0xdfff)
		cp = 0xfffd; /* lone surrogates cannot be encoded */
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	if (cp > 0x10ffff)
		cp = 0xfffd;
	if (cp == 0xfffd)
		return put_utf8(cp, out);
	out[0] = (char)(0xf0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

int pycode_unicode_to_utf8(const struct py_layout *l, uint32_t state, const uint8_t *data,
			   size_t nchars, char *out, size_t outlen)
{
	unsigned kind = (state >> l->unicode_state_kind_shift) & 7;
	size_t n = 0;

	if (outlen == 0 || !((state >> l->unicode_state_compact_shift) & 1))
		return -1;
	if (kind != 1 && kind != 2 && kind != 4)
		return -1;
	for (size_t i = 0; i < nchars; i++) {
		uint32_t cp;
		char buf[4];
		size_t len;

		if (kind == 1)
			cp = data[i];
		else if (kind == 2)
			cp = (uint32_t)data[2 * i] | ((uint32_t)data[2 * i + 1] << 8);
		else
			cp = (uint32_t)data[4 * i] | ((uint32_t)data[4 * i + 1] << 8) |
			     ((uint32_t)data[4 * i + 2] << 16) | ((uint32_t)data[4 * i + 3] << 24);
		len = put_utf8(cp, buf);
		if (n + len + 1 > outlen)
			break;
		memcpy(out + n, buf, len);
		n += len;
	}
	out[n] = '\0';
	return (int)n;
}

/* Reads a str object of the target into a new UTF-8 string. */
static int read_string(struct pycode_cache *c, uint64_t addr, char **out)
{
	const struct py_layout *l = pytarget_layout(c->target);
	struct proc *p = pytarget_proc(c->target);
	uint8_t head[128], *data = NULL;
	uint64_t length;
	uint32_t state;
	size_t nchars, width, data_off;
	char *s = NULL;
	int ret, len;

	if ((size_t)l->unicode_compact_data > sizeof(head))
		return -PMS_EGARBAGE;
	ret = proc_read(p, addr, head, (size_t)l->unicode_compact_data);
	if (ret)
		return ret;
	memcpy(&length, head + l->unicode_length, sizeof(length));
	memcpy(&state, head + l->unicode_state, sizeof(state));
	if (!((state >> l->unicode_state_compact_shift) & 1))
		return -PMS_EGARBAGE;
	width = (state >> l->unicode_state_kind_shift) & 7;
	if (width != 1 && width != 2 && width != 4)
		return -PMS_EGARBAGE;
	data_off = ((state >> l->unicode_state_ascii_shift) & 1) ? (size_t)l->unicode_ascii_data
								 : (size_t)l->unicode_compact_data;
	nchars = length > PYCODE_MAX_CHARS ? PYCODE_MAX_CHARS : (size_t)length;
	data = malloc(nchars * width + 1);
	s = malloc(nchars * 4 + 1);
	if (!data || !s) {
		ret = -ENOMEM;
		goto fail;
	}
	ret = proc_read(p, addr + data_off, data, nchars * width);
	if (ret)
		goto fail;
	len = pycode_unicode_to_utf8(l, state, data, nchars, s, nchars * 4 + 1);
	if (len < 0) {
		ret = -PMS_EGARBAGE;
		goto fail;
	}
	free(data);
	*out = s;
	return 0;
fail:
	free(data);
	free(s);
	return ret;
}

/* Copies a bytes object of the target (a line table). */
static int read_bytes(struct pycode_cache *c, uint64_t addr, uint8_t **out, size_t *outlen)
{
	const struct py_layout *l = pytarget_layout(c->target);
	struct proc *p = pytarget_proc(c->target);
	int64_t size;
	uint8_t *buf;
	int ret;

	ret = proc_read(p, addr + (uint64_t)l->varobject_size, &size, sizeof(size));
	if (ret)
		return ret;
	if (size < 0 || size > PYCODE_MAX_LINETABLE)
		return -PMS_EGARBAGE;
	buf = malloc((size_t)size + 1);
	if (!buf)
		return -ENOMEM;
	ret = proc_read(p, addr + (uint64_t)l->bytes_data, buf, (size_t)size);
	if (ret) {
		free(buf);
		return ret;
	}
	*out = buf;
	*outlen = (size_t)size;
	return 0;
}

static uint64_t field_u64(const uint8_t *code, int32_t off)
{
	uint64_t v = 0;

	if (off >= 0)
		memcpy(&v, code + off, sizeof(v));
	return v;
}

static int32_t field_i32(const uint8_t *code, int32_t off)
{
	int32_t v = 0;

	if (off >= 0)
		memcpy(&v, code + off, sizeof(v));
	return v;
}

static int read_key(struct pycode_cache *c, uint64_t addr, struct pycode_key *key)
{
	const struct py_layout *l = pytarget_layout(c->target);
	uint64_t code_type = pytarget_code_type(c->target);
	uint8_t code[PYCODE_MAX_CODE_SIZE];
	size_t size = l->code_size > 0 && l->code_size <= PYCODE_MAX_CODE_SIZE
			  ? (size_t)l->code_size
			  : PYCODE_MAX_CODE_SIZE;
	int ret;

	ret = proc_read(pytarget_proc(c->target), addr, code, size);
	if (ret)
		return ret;
	if (code_type && field_u64(code, l->object_type) != code_type)
		return -PMS_EGARBAGE;
	key->filename = field_u64(code, l->code_filename);
	key->name = field_u64(code, l->code_name);
	key->qualname = field_u64(code, l->code_qualname);
	key->linetable = field_u64(code, l->code_linetable);
	key->firstlineno = field_i32(code, l->code_firstlineno);
	key->argcount = field_i32(code, l->code_argcount);
	if (!key->filename || !key->name || key->firstlineno < 0)
		return -PMS_EGARBAGE;
	return 0;
}

static size_t slot_of(const struct pycode_cache *c, uint64_t addr)
{
	uint64_t h = addr * 0x9e3779b97f4a7c15ull;

	return (size_t)(h >> 20) % c->capacity;
}

static int fill_entry(struct pycode_cache *c, struct pycode_entry *e, uint64_t addr,
		      const struct pycode_key *key)
{
	int ret;

	entry_clear(e);
	e->addr = addr;
	e->key = *key;
	ret = read_string(c, key->qualname ? key->qualname : key->name, &e->function);
	if (ret == 0)
		ret = read_string(c, key->filename, &e->file);
	if (ret == 0 && key->linetable)
		ret = read_bytes(c, key->linetable, &e->linetable, &e->linetable_len);
	if (ret) {
		entry_clear(e);
		return ret;
	}
	e->info.function = e->function;
	e->info.file = e->file;
	e->info.firstlineno = key->firstlineno;
	return 0;
}

static int lookup_entry(struct pycode_cache *c, uint64_t addr, struct pycode_entry **out)
{
	struct pycode_key key = {0};
	struct pycode_entry *e;
	int ret;

	if (!addr)
		return -EFAULT;
	ret = read_key(c, addr, &key);
	if (ret)
		return ret;
	/* Direct-mapped: a collision evicts, which only costs a re-read. */
	e = &c->slots[slot_of(c, addr)];
	if (e->addr != addr || memcmp(&e->key, &key, sizeof(key)) != 0) {
		ret = fill_entry(c, e, addr, &key);
		if (ret)
			return ret;
	}
	*out = e;
	return 0;
}

int pycode_lookup(struct pycode_cache *c, uint64_t addr, const struct pycode_info **info)
{
	struct pycode_entry *e;
	int ret = lookup_entry(c, addr, &e);

	if (ret)
		return ret;
	*info = &e->info;
	return 0;
}

int pycode_line(struct pycode_cache *c, uint64_t addr, int offset)
{
	const struct py_layout *l = pytarget_layout(c->target);
	struct pycode_entry *e;
	int line;

	if (lookup_entry(c, addr, &e) != 0)
		return -1;
	if (offset < 0)
		return e->info.firstlineno;
	line = linetable_line(l->linetable_kind, e->linetable, e->linetable_len,
			      e->info.firstlineno, offset);
	return line;
}
