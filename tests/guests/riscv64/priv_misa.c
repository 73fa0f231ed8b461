/* misa reads MXL = 2 (64-bit) with at least I, M, A, C, S and U set; writes are ignored (QEMU has
 * no writable misa by default). mvendorid/marchid/mimpid are readable. */
#include "test.h"

#define EXT(c) (1UL << ((c) - 'A'))

int main(void)
{
    u64 misa = csr_read(misa);
    CHECK_EQ(misa >> 62, 2, 1);
    u64 want = EXT('I') | EXT('M') | EXT('A') | EXT('C') | EXT('S') | EXT('U');
    CHECK_EQ(misa & want, want, 2);
    CHECK_EQ(misa & EXT('E'), 0, 3);
    csr_write(misa, 0);
    CHECK_EQ(csr_read(misa), misa, 4);
    csr_write(misa, misa & ~EXT('C'));
    CHECK_EQ(csr_read(misa), misa, 5);
    (void)csr_read(mvendorid);
    (void)csr_read(marchid);
    (void)csr_read(mimpid);
    return 0;
}
