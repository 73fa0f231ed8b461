/* C: a token-table decompressor shaped like the kernel's kallsyms_expand_symbol (an outer loop over
 * compressed bytes whose body starts an inner copy loop over a NUL-terminated token). Linux boots
 * printed garbage symbol names ("schechechech...") when compiled regions lost the outer loop's
 * variables across the inner loop; every expansion is checked against the plain concatenation. */
#include "test.h"

static const char token_table[] = "ts\0che\0d_\0ext_\0ops\0ti\0o_\0uring\0t__\0h\0bpf_\0tc\0p\0";
static const u16 token_index[] = {0, 3, 7, 10, 15, 19, 22, 25, 31, 35, 37, 42, 45};

/* Symbols as (count, token numbers...): what a kallsyms_names entry holds. */
static const u8 names[] = {
    5, 0, 1, 2, 3, 4,     /* "sched_ext_ops" */
    3, 5, 6, 7,           /* "io_uring" */
    2, 8, 9,              /* "__h" */
    4, 0, 10, 11, 12,     /* "sbpf_tcp" */
    12, 0, 1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, /* a long one */
};

static unsigned expand(unsigned off, char *result, unsigned long maxlen)
{
    int len, skipped_first = 0;
    const char *tptr;
    const u8 *data = &names[off];
    len = *data;
    data++;
    off++;
    off += len;
    while (len) {
        tptr = &token_table[token_index[*data]];
        data++;
        len--;
        while (*tptr) {
            if (skipped_first) {
                if (maxlen <= 1)
                    goto tail;
                *result = *tptr;
                result++;
                maxlen--;
            } else
                skipped_first = 1;
            tptr++;
        }
    }
tail:
    if (maxlen)
        *result = '\0';
    return off;
}

/* The reference: the same concatenation without the nested loop's shape. */
static unsigned reference(unsigned off, char *result, unsigned long maxlen)
{
    unsigned n = names[off], k = 0, first = 1;
    for (unsigned i = 0; i < n; i++) {
        const char *t = &token_table[token_index[names[off + 1 + i]]];
        for (unsigned j = 0; t[j]; j++) {
            if (first) {
                first = 0;
                continue;
            }
            if (k + 1 < maxlen)
                result[k++] = t[j];
        }
    }
    if (maxlen)
        result[k] = 0;
    return off + 1 + n;
}

static int same(const char *a, const char *b)
{
    while (*a && *a == *b) {
        a++;
        b++;
    }
    return *a == *b;
}

int main(void)
{
    char got[128], want[128];
    for (int round = 0; round < 3000; round++) {
        unsigned off = 0, roff = 0, sym = 0;
        while (off < sizeof names) {
            unsigned long maxlen = (round % 7 == 6) ? 6 : sizeof got;
            off = expand(off, got, maxlen);
            roff = reference(roff, want, maxlen);
            CHECK_EQ(off, roff, 1);
            CHECK(same(got, want), 10 + sym);
            sym++;
        }
    }
    return 0;
}
