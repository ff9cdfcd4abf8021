/*
 * CRC32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of records and segment
 * headers. The SSE4.2 crc32 instruction does 8 bytes per step; a byte table serves CPUs without it.
 * The result is the standard CRC32C: tdm_crc32c(0, "123456789", 9) == 0xE3069283.
 */
#include <stdbool.h>
#include <string.h>

#include "log_pvt.h"

static uint32_t table[256];
static bool use_sse42;

__attribute__((constructor)) static void crc32c_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
		table[i] = c;
	}
#if defined(__x86_64__)
	__builtin_cpu_init();
	use_sse42 = __builtin_cpu_supports("sse4.2");
#endif
}

static uint32_t crc_table(uint32_t c, const uint8_t *p, size_t len)
{
	while (len--)
		c = table[(c ^ *p++) & 0xff] ^ (c >> 8);
	return c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc_sse42(uint32_t c, const uint8_t *p,
							     size_t len)
{
	uint64_t c64 = c;

	while (len >= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		c64 = __builtin_ia32_crc32di(c64, w);
		p += 8;
		len -= 8;
	}
	c = (uint32_t)c64;
	while (len--)
		c = __builtin_ia32_crc32qi(c, *p++);
	return c;
}
#endif

TDM_API uint32_t tdm_crc32c(uint32_t crc, const void *buf, size_t len)
{
	uint32_t c = ~crc;

#if defined(__x86_64__)
	if (use_sse42)
		return ~crc_sse42(c, buf, len);
#endif
	return ~crc_table(c, buf, len);
}
