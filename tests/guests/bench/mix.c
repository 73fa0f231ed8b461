/* mix: branchy and indirect-jump-heavy integer code: a switch-dispatched bytecode interpreter,
 * an open-addressing hash table, a prime sieve, 64-bit division (gcd, modular exponentiation),
 * calls through function pointers and a linked list walk. Self-checks: the interpreter's result
 * against the same loop in C, hash lookups find what was inserted, pi(65536) = 6542. */
#include "bench.h"

const char bench_name[] = "mix";

#define ROUNDS (55 * SCALE)

/* ---- bytecode interpreter ---- */
enum { OP_LI, OP_ADD, OP_MUL, OP_XOR, OP_SHR, OP_AND, OP_ADDI, OP_JNZ, OP_MOV, OP_HALT };

struct insn {
    uint8_t op, rd, rs1, rs2;
    uint32_t imm;
};

static uint64_t vm_run(const struct insn *prog, uint64_t *reg)
{
    for (const struct insn *pc = prog;; pc++) {
        switch (pc->op) {
        case OP_LI:   reg[pc->rd] = pc->imm; break;
        case OP_ADD:  reg[pc->rd] = reg[pc->rs1] + reg[pc->rs2]; break;
        case OP_MUL:  reg[pc->rd] = reg[pc->rs1] * reg[pc->rs2]; break;
        case OP_XOR:  reg[pc->rd] = reg[pc->rs1] ^ reg[pc->rs2]; break;
        case OP_SHR:  reg[pc->rd] = reg[pc->rs1] >> (pc->imm & 63); break;
        case OP_AND:  reg[pc->rd] = reg[pc->rs1] & pc->imm; break;
        case OP_ADDI: reg[pc->rd] = reg[pc->rs1] + (uint64_t)(int64_t)(int32_t)pc->imm; break;
        case OP_JNZ:  if (reg[pc->rs1]) pc = prog + pc->imm - 1; break;
        case OP_MOV:  reg[pc->rd] = reg[pc->rs1]; break;
        case OP_HALT: return reg[0];
        default:      bench_fail(10);
        }
    }
}

/* r0 = acc, r1 = counter, r2 = lcg state, r3 = multiplier, r4 = tmp */
static const struct insn vm_prog[] = {
    { OP_LI, 3, 0, 0, 1103515245u },
    { OP_LI, 0, 0, 0, 0 },
    /* 2: loop */
    { OP_MUL, 2, 2, 3, 0 },
    { OP_ADDI, 2, 2, 0, 12345 },
    { OP_SHR, 4, 2, 0, 7 },
    { OP_XOR, 2, 2, 4, 0 },
    { OP_AND, 4, 2, 0, 0xff },
    { OP_ADD, 0, 0, 4, 0 },
    { OP_ADDI, 1, 1, 0, (uint32_t)-1 },
    { OP_JNZ, 0, 1, 0, 2 },
    { OP_HALT, 0, 0, 0, 0 },
};

static uint64_t vm_ref(uint64_t count, uint64_t state)
{
    uint64_t acc = 0;
    while (count--) {
        state = state * 1103515245u + 12345;
        state ^= state >> 7;
        acc += state & 0xff;
    }
    return acc;
}

/* ---- hash table (open addressing, linear probing) ---- */
#define HT_SIZE 8192
#define HT_KEYS 5000
static uint64_t ht_key[HT_SIZE];
static uint32_t ht_val[HT_SIZE];

static uint32_t ht_slot(uint64_t k)
{
    return (uint32_t)((k * 0x9e3779b97f4a7c15ULL) >> 51);
}

static void ht_put(uint64_t k, uint32_t v)
{
    uint32_t i = ht_slot(k);
    while (ht_key[i] && ht_key[i] != k)
        i = (i + 1) & (HT_SIZE - 1);
    ht_key[i] = k;
    ht_val[i] = v;
}

static int ht_get(uint64_t k, uint32_t *v)
{
    uint32_t i = ht_slot(k);
    while (ht_key[i]) {
        if (ht_key[i] == k) {
            *v = ht_val[i];
            return 1;
        }
        i = (i + 1) & (HT_SIZE - 1);
    }
    return 0;
}

/* ---- sieve ---- */
#define SIEVE_N 65536
static uint8_t composite[SIEVE_N];

static uint32_t sieve(void)
{
    for (uint32_t i = 0; i < SIEVE_N; i++)
        composite[i] = 0;
    uint32_t count = 0;
    for (uint32_t i = 2; i < SIEVE_N; i++) {
        if (composite[i])
            continue;
        count++;
        for (uint32_t j = i * i; j < SIEVE_N; j += i)
            composite[j] = 1;
    }
    return count;
}

/* ---- 64-bit division ---- */
static uint64_t gcd(uint64_t a, uint64_t b)
{
    while (b) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static uint64_t powmod(uint64_t b, uint64_t e, uint64_t m)
{
    uint64_t r = 1;
    b %= m;
    while (e) {
        if (e & 1)
            r = r * b % m;
        b = b * b % m;
        e >>= 1;
    }
    return r;
}

/* ---- function pointers ---- */
static uint64_t f_add(uint64_t a, uint64_t b) { return a + b; }
static uint64_t f_sub(uint64_t a, uint64_t b) { return a - b; }
static uint64_t f_rot(uint64_t a, uint64_t b) { b &= 63; return b ? (a << b) | (a >> (64 - b)) : a; }
static uint64_t f_mul(uint64_t a, uint64_t b) { return a * (b | 1); }
static uint64_t f_div(uint64_t a, uint64_t b) { return a / ((b & 0xffff) + 1); }
static uint64_t (*const funcs[8])(uint64_t, uint64_t) = { f_add, f_sub, f_rot, f_mul,
                                                          f_div, f_add, f_rot, f_mul };

/* ---- linked list ---- */
#define NODES 4096
struct node {
    struct node *next;
    uint64_t val;
};
static struct node nodes[NODES];

uint64_t bench_run(void)
{
    uint64_t s = bench_seed;
    uint64_t acc = 0;
    for (uint32_t r = 0; r < ROUNDS; r++) {
        /* interpreter */
        uint64_t reg[8] = { 0, 20000, r + 1, 0, 0, 0, 0, 0 };
        uint64_t v = vm_run(vm_prog, reg);
        if (v != vm_ref(20000, r + 1))
            bench_fail(1);
        acc = mix64(acc, v);

        /* hash table */
        for (uint32_t i = 0; i < HT_SIZE; i++)
            ht_key[i] = 0;
        uint64_t hs = s;
        for (uint32_t i = 0; i < HT_KEYS; i++)
            ht_put(xorshift64(&hs) | 1, i);
        hs = s;
        for (uint32_t i = 0; i < HT_KEYS; i++) {
            uint32_t got;
            if (!ht_get(xorshift64(&hs) | 1, &got))
                bench_fail(2);
            acc = mix64(acc, got);
        }
        for (uint32_t i = 0; i < HT_KEYS; i++) {
            uint32_t got;
            if (ht_get(xorshift64(&hs) & ~1ULL, &got))
                bench_fail(3);
        }
        s = hs;

        /* sieve */
        uint32_t primes = sieve();
        if (primes != 6542)
            bench_fail(4);

        /* division */
        for (int i = 0; i < 200; i++) {
            uint64_t a = xorshift64(&s), b = xorshift64(&s) >> (i & 31);
            acc = mix64(acc, gcd(a, b | 1));
            acc = mix64(acc, powmod(a, b, (b >> 32) | 3));
        }

        /* function pointers */
        uint64_t x = s;
        for (int i = 0; i < 4000; i++)
            x = funcs[(x >> 13) & 7](x, (uint64_t)i * 0x9e3779b9u);
        acc = mix64(acc, x);

        /* linked list: link in a pseudo-random order, then walk */
        for (uint32_t i = 0; i < NODES; i++) {
            nodes[i].val = i;
            nodes[i].next = 0;
        }
        uint32_t stride = 2 * (uint32_t)(xorshift64(&s) % (NODES / 2)) + 1; /* odd: a full cycle */
        struct node *head = &nodes[0];
        uint32_t at = 0;
        for (uint32_t i = 1; i < NODES; i++) {
            uint32_t nx = (at + stride) & (NODES - 1);
            nodes[at].next = &nodes[nx];
            at = nx;
        }
        uint64_t walk = 0, len = 0;
        for (struct node *n = head; n; n = n->next) {
            walk = walk * 3 + n->val;
            len++;
        }
        if (len != NODES)
            bench_fail(5);
        acc = mix64(acc, walk);
    }
    return acc;
}
