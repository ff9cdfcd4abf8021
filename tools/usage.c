/*
 * The usage error every tools/ program prints the same way ("PROG: what is wrong" and
 * "Try 'PROG --help'.", exit status 2): tandemctl, tandemd and tandem-load link it.
 */
#include <stdarg.h>
#include <stdio.h>

#include "ctl.h"

int tdm_ctl_usage_error(const char *path, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", path);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry '%s --help'.\n", path);
	return TDM_CTL_EXIT_USAGE;
}
