/*
 * Assertions with tandem's error context, shared by the cmocka tests: on failure they print the
 * expression, both values and, for return codes, tdm_strerror and the thread's tdm_errmsg().
 * Include after <cmocka.h>.
 */
#ifndef TASSERT_H
#define TASSERT_H

#include <stdint.h>

#include "tdm_err.h"

#define assert_rc(rc, want)                                                                   \
	do {                                                                                  \
		int rc_ = (rc), want_ = (want);                                               \
		if (rc_ != want_)                                                             \
			fail_msg("%s = %d (%s), want %d (%s); errmsg: %s", #rc, rc_,          \
				 tdm_strerror(rc_), want_, tdm_strerror(want_), tdm_errmsg()); \
	} while (0)

#define assert_ok(rc) assert_rc((rc), 0)

#define assert_u64(a, b)                                                                      \
	do {                                                                                  \
		uint64_t a_ = (uint64_t)(a), b_ = (uint64_t)(b);                              \
		if (a_ != b_)                                                                 \
			fail_msg("%s = %llu (0x%llx), want %s = %llu (0x%llx)", #a,            \
				 (unsigned long long)a_, (unsigned long long)a_, #b,          \
				 (unsigned long long)b_, (unsigned long long)b_);             \
	} while (0)

#define assert_nodiff(expr)                                                                   \
	do {                                                                                  \
		const char *d_ = (expr);                                                      \
		if (d_)                                                                       \
			fail_msg("%s: %s", #expr, d_);                                        \
	} while (0)

#endif /* TASSERT_H */
