/*
 * tandem-load: the command line (options, their checks, --help).
 */
#ifndef TDM_LOAD_OPTS_H
#define TDM_LOAD_OPTS_H

#include <stdbool.h>
#include <stdint.h>

#include "load_keys.h"
#include "tandem.h"

#define TDM_LOAD_EXIT_USAGE 2                 /**< the command line is wrong */
#define TDM_LOAD_MAX_RATE 1000000000ull       /**< writes/s; keeps schedule arithmetic in 64 bits */
#define TDM_LOAD_MAX_PIPELINE 65536u
#define TDM_LOAD_MAX_ATTACH (TDM_MAX_PEERS + 1) /**< --attach: every node of a cluster */

struct tdm_load_opts {
	const char *attach_dir;   /**< --attach: the first one given */
	const char *attach_dirs[TDM_LOAD_MAX_ATTACH]; /**< every --attach, in order */
	int n_attach;
	bool follow;              /**< --follow: write to whichever attached node is primary */
	bool verify;              /**< --verify: read acknowledged writes back at the end; with
	                               --spread: compare every node's digest */
	bool spread;              /**< --spread: a writer per attached node (load_spread.c) */
	uint32_t shared_pct;      /**< --shared: percent of the key space written on every node */
	bool shared_set;
	const char *config_path;  /**< --config */
	char **sets;              /**< --set section.key=value, in command-line order (owned) */
	int n_sets;
	uint64_t rate;            /**< writes/s; 0 = max (closed loop) */
	double duration;          /**< seconds measured, when count is 0 */
	bool duration_set;
	uint64_t count;           /**< writes measured; 0 = by duration */
	double warmup;            /**< seconds before measuring */
	uint32_t pipeline;        /**< writes per wait */
	uint32_t value_size;
	uint64_t keys;            /**< key space */
	enum tdm_load_dist dist;
	double theta;             /**< zipf skew */
	bool theta_set;
	bool level_set;           /**< --level given; else the node's (--config) or local */
	enum tdm_level level;
	uint32_t delete_permille;
	uint64_t seed;
	bool json, quiet;
	const char *plot_path;    /**< --plot, checked not to be a .png */
};

/**
 * Parse and check the command line into o (defaults for what is not given). Prints --help to
 * stdout, or a usage error naming the option to stderr.
 * @return 0 run; -1 help was printed (exit 0); TDM_LOAD_EXIT_USAGE after a usage error.
 *         o->sets is allocated in every case: free it.
 */
int tdm_load_opts_parse(int argc, char **argv, struct tdm_load_opts *o);

#endif /* TDM_LOAD_OPTS_H */
