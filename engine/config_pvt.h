/*
 * Between the configuration's two files: config.c (keys, values, overrides, check, printing)
 * and config_load.c (reading INI files with inih). Only they include this.
 */
#ifndef TDM_CONFIG_PVT_H
#define TDM_CONFIG_PVT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tandem.h"

#define ENG_CONFIG_NAME_MAX 64 /**< section and key names (inih cuts them at 50) */

/**
 * Apply one entry of a file: section.name = value, as tdm_config_set does.
 * @param more the value is an indented line that continues the key's value (eal_args only)
 * @param reason out: "what is wrong; what to write instead" when refused
 * @return 0, or -1 (reason filled)
 */
int eng_config_entry(struct tdm_config *cfg, const char *section, const char *name,
		     const char *value, bool more, char *reason, size_t cap);

/** The node id N of a "[peer.N]" section name, 0 for any other name. */
uint16_t eng_config_peer_id(const char *section);

#endif /* TDM_CONFIG_PVT_H */
