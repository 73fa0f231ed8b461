/* TPM 2.0 through the memory-mapped TIS registers (tis.h), as firmware would use it.
 *
 * Commands: TPM2_Startup(CLEAR); TPM2_GetRandom(16) twice (answers must differ);
 * TPM2_PCR_Extend(16, SHA-256 of "tessera") with a password session; TPM2_PCR_Read(SHA-256, 16).
 * PCR 16 starts at zero after Startup(CLEAR), so the result must be
 * SHA-256(32 zero bytes || SHA-256("tessera")), computed on the host with
 *   python3 -c 'import hashlib; d=hashlib.sha256(b"tessera").digest(); print(hashlib.sha256(bytes(32)+d).hexdigest())'
 * Prints "TPM random <hex>" and "TPM PCR16 <hex>" for the test to check as well. */
#include "tis.h"

/* SHA-256("tessera") */
static const u8 digest_tessera[32] = {
    0x2f, 0x1e, 0x83, 0xd3, 0x0f, 0xff, 0x12, 0xf1, 0x0f, 0x4a, 0x95, 0x6d, 0x08, 0xbd, 0x6b, 0x20,
    0x0a, 0xe8, 0x9e, 0x24, 0x62, 0x1c, 0x20, 0x66, 0xc1, 0xa9, 0x02, 0xaa, 0xb2, 0xda, 0x7a, 0xcb,
};
/* SHA-256(zeros(32) || SHA-256("tessera")) */
static const u8 pcr16_expected[32] = {
    0x51, 0xaf, 0x4d, 0xaa, 0x4b, 0x32, 0x6d, 0x84, 0x32, 0xc2, 0x74, 0x82, 0x08, 0x68, 0x45, 0xe5,
    0x59, 0x9b, 0xb5, 0x8e, 0xad, 0x73, 0xa5, 0xda, 0x0b, 0x4c, 0x88, 0x95, 0xad, 0x17, 0x6d, 0x7b,
};

int main(void)
{
    tis_open();

    static const u8 startup[12] = {0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x44, 0, 0};
    u32 n = transact(startup, sizeof startup);
    CHECK_EQ(n, 10, 20);
    CHECK_EQ(be32(rsp + 6), 0, 21);

    static const u8 get_random[12] = {0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7b, 0, 16};
    u8 first[16];
    n = transact(get_random, sizeof get_random);
    CHECK_EQ(n, 28, 30);
    CHECK_EQ(be32(rsp + 6), 0, 31);
    CHECK_EQ(be16(rsp + 10), 16, 32);
    memcpy(first, rsp + 12, 16);
    put_bytes("TPM random ", first, 16);
    n = transact(get_random, sizeof get_random);
    CHECK_EQ(n, 28, 33);
    CHECK(memcmp(first, rsp + 12, 16) != 0, 34);

    /* TPM2_PCR_Extend(PCR 16) with a password session (TPM_RS_PW, empty auth). */
    u8 extend[65];
    put_be16(extend, 0x8002);
    put_be32(extend + 2, sizeof extend);
    put_be32(extend + 6, 0x182);
    put_be32(extend + 10, 16);          /* pcrHandle */
    put_be32(extend + 14, 9);           /* authorizationSize */
    put_be32(extend + 18, 0x40000009);  /* TPM_RS_PW */
    put_be16(extend + 22, 0);           /* nonce */
    extend[24] = 0;                     /* sessionAttributes */
    put_be16(extend + 25, 0);           /* hmac */
    put_be32(extend + 27, 1);           /* TPML_DIGEST_VALUES.count */
    put_be16(extend + 31, 0x000b);      /* TPM_ALG_SHA256 */
    memcpy(extend + 33, digest_tessera, 32);
    n = transact(extend, sizeof extend);
    CHECK_EQ(be32(rsp + 6), 0, 40);

    /* TPM2_PCR_Read(SHA-256: PCR 16). */
    static const u8 pcr_read[20] = {0x80, 0x01, 0, 0, 0, 20, 0, 0, 0x01, 0x7e,
                                    0, 0, 0, 1, 0x00, 0x0b, 3, 0x00, 0x00, 0x01};
    n = transact(pcr_read, sizeof pcr_read);
    CHECK_EQ(be32(rsp + 6), 0, 50);
    CHECK_EQ(n, 62, 51);
    CHECK_EQ(be32(rsp + 24), 1, 52); /* one digest */
    CHECK_EQ(be16(rsp + 28), 32, 53);
    put_bytes("TPM PCR16 ", rsp + 30, 32);
    CHECK(memcmp(rsp + 30, pcr16_expected, 32) == 0, 54);

    /* Relinquish the locality. */
    write8(ACCESS, ACCESS_ACTIVE);
    CHECK((read8(ACCESS) & ACCESS_ACTIVE) == 0, 60);
    puts_("TPM TIS checks passed\n");
    return 0;
}
