/*
 * tandem-load --verify: remember, per key, the newest acknowledged write and the newest write
 * attempted (each value starts with its write's sequence number), then read every key back
 * from the node that is primary and check that no acknowledged write was lost: the value found
 * must be the newest acknowledged one or a later write whose fate was unknown (it failed or was
 * not waited for), never an older one and never missing.
 */
#ifndef TDM_LOAD_VERIFY_H
#define TDM_LOAD_VERIFY_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct tdm_load_verify {
	uint64_t keys;
	uint64_t *acked;   /**< per key: sequence of the newest acknowledged write (0 none) */
	uint64_t *tried;   /**< per key: sequence of the newest write attempted */
};

/** @return 0 or -ENOMEM. */
int tdm_load_verify_init(struct tdm_load_verify *v, uint64_t keys);
void tdm_load_verify_free(struct tdm_load_verify *v);

static inline void tdm_load_verify_tried(struct tdm_load_verify *v, uint64_t key, uint64_t seq)
{
	if (seq > v->tried[key])
		v->tried[key] = seq;
}

static inline void tdm_load_verify_acked(struct tdm_load_verify *v, uint64_t key, uint64_t seq)
{
	if (seq > v->acked[key])
		v->acked[key] = seq;
}

/**
 * Read every key with an acknowledged write back from the node at data_dir (many keys per
 * control request) and check them. Prints a summary line (and up to 5 lost writes) to out.
 * @return the number of keys whose acknowledged write is lost, or a negative error.
 */
long tdm_load_verify_run(const struct tdm_load_verify *v, const char *data_dir, FILE *out,
			 uint64_t *checked);

#endif /* TDM_LOAD_VERIFY_H */
