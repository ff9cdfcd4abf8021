/*
 * The per-thread error context: a message buffer filled on slow paths, and names for our codes.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "log_pvt.h"

static _Thread_local char errbuf[1024];

TDM_API const char *tdm_strerror(int code)
{
	switch (code) {
	case 0: return "success";
	case TDM_ERR_BACKPRESSURE: return "ring full (back-pressure)";
	case TDM_ERR_EMPTY: return "nothing published at this position yet";
	case TDM_ERR_TRIMMED: return "position no longer retained (full resync needed)";
	case TDM_ERR_CORRUPT: return "corrupt data";
	case TDM_ERR_VERSION: return "layout version mismatch";
	case TDM_ERR_CLUSTER: return "cluster id mismatch";
	case TDM_ERR_FAILED: return "log stopped after an I/O error";
	case TDM_ERR_CLOSED: return "ring closed by its owner";
	case TDM_ERR_NOT_FOUND: return "no such key";
	case TDM_ERR_TIMEOUT: return "commit wait timed out";
	case TDM_ERR_DEGRADED: return "acknowledged without the quorum (degraded to async)";
	case TDM_ERR_NOT_PRIMARY: return "not the primary";
	case TDM_ERR_CONFIG: return "bad configuration";
	default: break;
	}
	if (code < 0 && code > -4096)
		return strerror(-code);
	return "unknown error";
}

TDM_API const char *tdm_errmsg(void)
{
	return errbuf;
}

TDM_API void tdm_err_clear(void)
{
	errbuf[0] = '\0';
}

TDM_API int tdm_err_set(int code, const char *func, int line, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(errbuf, sizeof(errbuf), "%s:%d: ", func, line);

	if (n < 0 || (size_t)n >= sizeof(errbuf))
		return code;
	va_start(ap, fmt);
	vsnprintf(errbuf + n, sizeof(errbuf) - (size_t)n, fmt, ap);
	va_end(ap);
	return code;
}

TDM_API int tdm_err_append(int code, const char *fmt, ...)
{
	size_t n = strlen(errbuf);
	va_list ap;

	if (n + 2 >= sizeof(errbuf))
		return code;
	errbuf[n++] = '\n';
	va_start(ap, fmt);
	vsnprintf(errbuf + n, sizeof(errbuf) - n, fmt, ap);
	va_end(ap);
	return code;
}
