/* string: C string routines written out in C (memcpy, memcmp, strlen, strcmp, memchr, strchr,
 * naive strstr, in-place case conversion and word reversal, FNV-1a hashing) run over a 32 KiB
 * text of pseudo-random words and lines, many rounds, mutating the text between rounds.
 * Self-checks: copies compare equal, word/line counts agree between two counting methods. */
#include "bench.h"

const char bench_name[] = "string";

#define TEXT_LEN (32 * 1024)
#define MAX_LINES 4096
#define ROUNDS (210 * SCALE)

static char text[TEXT_LEN + 1];
static char work[TEXT_LEN + 16];
static char *lines[MAX_LINES];

static size_t my_strlen(const char *s)
{
    const char *p = s;
    while (*p)
        p++;
    return (size_t)(p - s);
}

static int my_strcmp(const char *a, const char *b)
{
    const unsigned char *x = (const unsigned char *)a, *y = (const unsigned char *)b;
    while (*x && *x == *y) {
        x++;
        y++;
    }
    return (int)*x - (int)*y;
}

static int my_memcmp(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a, *y = b;
    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i])
            return (int)x[i] - (int)y[i];
    return 0;
}

/* Word-at-a-time when source and destination are co-aligned, bytes otherwise. */
static void my_memcpy(void *dst, const void *src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;
    if ((((uintptr_t)d ^ (uintptr_t)s) & 7) == 0) {
        while (n && ((uintptr_t)d & 7)) {
            *d++ = *s++;
            n--;
        }
        uint64_t *dw = (uint64_t *)d;
        const uint64_t *sw = (const uint64_t *)s;
        for (; n >= 8; n -= 8)
            *dw++ = *sw++;
        d = (unsigned char *)dw;
        s = (const unsigned char *)sw;
    }
    while (n--)
        *d++ = *s++;
}

static const char *my_memchr(const char *s, char c, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] == c)
            return s + i;
    return 0;
}

static const char *my_strchr(const char *s, char c)
{
    for (;; s++) {
        if (*s == c)
            return s;
        if (!*s)
            return 0;
    }
}

static const char *my_strstr(const char *hay, const char *needle)
{
    size_t n = my_strlen(needle);
    for (; (hay = my_strchr(hay, needle[0])) != 0; hay++) {
        size_t i = 1;
        while (i < n && hay[i] == needle[i])
            i++;
        if (i == n)
            return hay;
    }
    return 0;
}

static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static void reverse(char *s, size_t n)
{
    for (size_t i = 0, j = n; i + 1 < j; i++, j--) {
        char t = s[i];
        s[i] = s[j - 1];
        s[j - 1] = t;
    }
}

static char random_letter(uint64_t *s)
{
    /* A skewed alphabet so that searches find matches. */
    return "eeeettaaoinshrdlcumwfgypbvkjxqz"[xorshift64(s) % 31];
}

uint64_t bench_run(void)
{
    uint64_t s = bench_seed;
    size_t pos = 0;
    while (pos < TEXT_LEN) {
        size_t wl = 1 + xorshift64(&s) % 9;
        for (size_t i = 0; i < wl && pos < TEXT_LEN; i++)
            text[pos++] = random_letter(&s);
        if (pos < TEXT_LEN)
            text[pos++] = (xorshift64(&s) % 8 == 0) ? '\n' : ' ';
    }
    text[TEXT_LEN] = 0;

    uint64_t acc = 0;
    char needle[8];
    for (uint32_t r = 0; r < ROUNDS; r++) {
        /* Copy (aligned, then shifted by 3 bytes) and compare. */
        my_memcpy(work, text, TEXT_LEN + 1);
        if (my_memcmp(work, text, TEXT_LEN + 1) != 0)
            bench_fail(1);
        my_memcpy(work + 3, text, TEXT_LEN + 1);
        if (my_strcmp(work + 3, text) != 0)
            bench_fail(2);
        my_memcpy(work, text, TEXT_LEN + 1);

        /* Split into lines with memchr; count them again with strchr. */
        size_t nlines = 0;
        char *p = work, *end = work + TEXT_LEN;
        while (p < end && nlines < MAX_LINES) {
            char *nl = (char *)my_memchr(p, '\n', (size_t)(end - p));
            lines[nlines++] = p;
            if (!nl)
                break;
            *nl = 0;
            p = nl + 1;
        }
        size_t nl2 = 1;
        for (const char *q = text; (q = my_strchr(q, '\n')) != 0; q++)
            nl2++;
        if (nl2 != nlines)
            bench_fail(3);

        /* Line lengths, neighbour comparisons. */
        for (size_t i = 0; i < nlines; i++) {
            size_t len = my_strlen(lines[i]);
            acc = mix64(acc, len);
            if (i > 0) {
                int c = my_strcmp(lines[i - 1], lines[i]);
                acc = mix64(acc, (uint64_t)(c < 0 ? 1 : c > 0 ? 2 : 0));
            }
        }

        /* Substring search for a few needles in the whole text. */
        for (int k = 0; k < 4; k++) {
            size_t nlen = 2 + (size_t)(k & 1);
            for (size_t i = 0; i < nlen; i++)
                needle[i] = random_letter(&s);
            needle[nlen] = 0;
            uint64_t count = 0;
            for (const char *q = text; (q = my_strstr(q, needle)) != 0; q++)
                count++;
            acc = mix64(acc, count);
        }

        /* Reverse every line in place, upper-case the vowels, hash everything. */
        for (size_t i = 0; i < nlines; i++) {
            size_t len = my_strlen(lines[i]);
            reverse(lines[i], len);
            for (size_t j = 0; j < len; j++) {
                char c = lines[i][j];
                if (c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u')
                    lines[i][j] = (char)(c - 'a' + 'A');
            }
        }
        acc = mix64(acc, fnv1a(work, TEXT_LEN));

        /* Mutate the text a little for the next round (letters only, keeps the structure). */
        for (int k = 0; k < 16; k++) {
            size_t at = xorshift64(&s) % TEXT_LEN;
            if (text[at] != ' ' && text[at] != '\n')
                text[at] = random_letter(&s);
        }
    }
    return acc;
}
