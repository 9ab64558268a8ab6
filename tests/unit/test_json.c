#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

static char *render(void (*build)(struct json *))
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	struct json *j = json_new(f, false);

	build(j);
	json_free(j);
	fclose(f);
	return buf;
}

static void nested(struct json *j)
{
	json_object_begin(j);
	json_kv_string(j, "a", "x");
	json_key(j, "list");
	json_array_begin(j);
	json_int(j, -1);
	json_uint(j, 18446744073709551615ull);
	json_bool(j, true);
	json_null(j);
	json_object_begin(j);
	json_object_end(j);
	json_array_end(j);
	json_kv_double(j, "d", 0.5);
	json_object_end(j);
}

Test(json, nesting_and_commas)
{
	char *s = render(nested);

	cr_assert_str_eq(s,
			 "{\"a\":\"x\",\"list\":[-1,18446744073709551615,true,null,{}],\"d\":0.5}"
			 "\n");
	free(s);
}

static void escapes(struct json *j)
{
	json_array_begin(j);
	json_string(j, "q\"b\\n\n\t\x01");
	json_string(j, "caf\xc3\xa9 \xe6\xa8\xa1"); /* valid UTF-8 passes through */
	json_string(j, "bad\xff\xc3(end");	    /* invalid bytes become U+FFFD */
	json_double(j, 1.0 / 0.0);		    /* no infinity in JSON */
	json_array_end(j);
}

Test(json, escaping_and_utf8)
{
	char *s = render(escapes);

	cr_assert_str_eq(s, "[\"q\\\"b\\\\n\\n\\t\\u0001\",\"caf\xc3\xa9 \xe6\xa8\xa1\","
			    "\"bad\\ufffd\\ufffd(end\",null]\n");
	free(s);
}
