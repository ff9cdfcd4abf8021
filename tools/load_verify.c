/* tandem-load --verify (see load_verify.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "load_keys.h"
#include "load_verify.h"
#include "tandem.h"

#define VERIFY_BATCH 4096 /* keys per control request */

int tdm_load_verify_init(struct tdm_load_verify *v, uint64_t keys)
{
	v->keys = keys;
	v->acked = calloc(keys, sizeof(*v->acked));
	v->tried = calloc(keys, sizeof(*v->tried));
	if (!v->acked || !v->tried) {
		tdm_load_verify_free(v);
		return -ENOMEM;
	}
	return 0;
}

void tdm_load_verify_free(struct tdm_load_verify *v)
{
	free(v->acked);
	free(v->tried);
	v->acked = v->tried = NULL;
}

/* Check one answer (code, value) for key k; print the first few losses. */
static bool check_one(const struct tdm_load_verify *v, uint64_t k, int32_t code,
		      const uint8_t *val, uint32_t vlen, FILE *out, long lost)
{
	uint64_t seq = 0;
	char key[TDM_LOAD_KEY_LEN + 1];

	if (code == 0 && vlen >= 8)
		memcpy(&seq, val, 8);
	if (code == 0 && seq >= v->acked[k] && seq <= v->tried[k])
		return true;
	if (lost < 5) {
		tdm_load_key_format(k, key);
		key[TDM_LOAD_KEY_LEN] = 0;
		fprintf(out, "  LOST: key %s: acknowledged write #%" PRIu64 ", the node has %s #%"
			PRIu64 "\n", key, v->acked[k], code ? "nothing" : "write", seq);
	}
	return false;
}

long tdm_load_verify_run(const struct tdm_load_verify *v, const char *data_dir, FILE *out,
			 uint64_t *checked)
{
	uint8_t *req = malloc(VERIFY_BATCH * (2 + TDM_LOAD_KEY_LEN));
	uint32_t cap = 8u << 20, got;
	uint8_t *ans = malloc(cap);
	uint64_t batch[VERIFY_BATCH];
	long lost = 0;
	int rc = 0;

	*checked = 0;
	for (uint64_t k = 0; req && ans && k < v->keys && rc == 0;) {
		uint32_t len = 0, n = 0, off = 0;

		for (; k < v->keys && n < VERIFY_BATCH; k++) {
			uint16_t klen = TDM_LOAD_KEY_LEN;

			if (!v->acked[k])
				continue;
			memcpy(req + len, &klen, 2);
			tdm_load_key_format(k, (char *)req + len + 2);
			len += 2 + TDM_LOAD_KEY_LEN;
			batch[n++] = k;
		}
		if (n == 0)
			break;
		rc = tdm_ctl_get_many(data_dir, req, len, ans, cap, &got);
		for (uint32_t i = 0; rc == 0 && i < n; i++) {
			int32_t code;
			uint32_t vlen;

			if (off + 8 > got) {
				rc = -EPROTO;
				break;
			}
			memcpy(&code, ans + off, 4);
			memcpy(&vlen, ans + off + 4, 4);
			if (off + 8 + vlen > got) {
				rc = -EPROTO;
				break;
			}
			lost += !check_one(v, batch[i], code, ans + off + 8, vlen, out, lost);
			off += 8 + vlen;
			(*checked)++;
		}
	}
	if (!req || !ans)
		rc = -ENOMEM;
	free(req);
	free(ans);
	if (rc)
		return rc;
	return lost;
}
