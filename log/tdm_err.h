/*
 * tandem error codes and the per-thread error context.
 *
 * Every tandem function returns 0 (or a count) on success and a negative code on failure. Codes
 * are negative errno values where one fits, or our own named codes below -30000 for outcomes that
 * are not failures of the system (ring full, nothing to read yet, position trimmed).
 *
 * On slow paths a failing function also fills a per-thread message buffer with what went wrong,
 * naming the file, position or key involved and what to do about it; tdm_errmsg() returns it.
 * Hot paths return bare codes and leave the buffer alone.
 *
 * This is the base of every module, so it lives in log/ (the bottom of the dependency chain) as
 * the one shared header beside tdm_log.h.
 */
#ifndef TDM_ERR_H
#define TDM_ERR_H

#include <stddef.h>

#define TDM_ERR_BACKPRESSURE (-30001) /**< ring full: the flusher has not freed space yet; retry */
#define TDM_ERR_EMPTY (-30002)        /**< nothing published at this position yet; poll again */
#define TDM_ERR_TRIMMED (-30003)      /**< position no longer retained; a full resync is needed */
#define TDM_ERR_CORRUPT (-30004)      /**< data failed validation (checksum, framing); see msg */
#define TDM_ERR_VERSION (-30005)      /**< a file or ring of another layout version */
#define TDM_ERR_CLUSTER (-30006)      /**< a file or peer of another cluster id */
#define TDM_ERR_FAILED (-30007)       /**< the log stopped after an I/O error; see msg */
#define TDM_ERR_CLOSED (-30008)       /**< the ring's owner closed it or is gone */
#define TDM_ERR_NOT_FOUND (-30009)    /**< no such key (store reads) */
#define TDM_ERR_TIMEOUT (-30010)      /**< a commit wait timed out; the write is in the log but
                                           did not reach the level (policy: fail) */
#define TDM_ERR_DEGRADED (-30011)     /**< the quorum did not answer in time and the write was
                                           acknowledged at `local` instead (policy: degrade) */
#define TDM_ERR_NOT_PRIMARY (-30012)  /**< writes go to the primary; this node is a replica */
#define TDM_ERR_CONFIG (-30013)       /**< bad configuration; the message names file, line, key */

/**
 * Human-readable name of a code: "ring full (back-pressure)", strerror text for errno codes.
 * @return a static string, never NULL.
 */
const char *tdm_strerror(int code);

/** The calling thread's last error message ("" when none). Valid until the next error. */
const char *tdm_errmsg(void);

/** Clear the calling thread's error message. */
void tdm_err_clear(void);

/**
 * Record an error on the calling thread: replaces the message with "func:line: text".
 * Use through TDM_ERR(). @return code, so callers can write `return TDM_ERR(-EINVAL, ...)`.
 */
int tdm_err_set(int code, const char *func, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/** Append a line of context ("while opening X") to the calling thread's message. @return code. */
int tdm_err_append(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define TDM_ERR(code, ...) tdm_err_set((code), __func__, __LINE__, __VA_ARGS__)

#endif /* TDM_ERR_H */
