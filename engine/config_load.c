/*
 * Reading a configuration file (tdm_config_load) with inih; the keys and what they take are in
 * config.c, whose top comment is the reference of the file format.
 *
 * inih gives the handler no line numbers (the Debian library is built without
 * INI_HANDLER_LINENO), so the file is parsed through ini_parse_stream with a reader that counts
 * lines: inih calls the handler for line N right after reading it. The reader also sees what
 * inih does not report: lines too long for its buffer (inih would read the rest as a new line),
 * and indented lines, which inih hands over as more of the previous key's value.
 *
 * Every error is "FILE:LINE: [section] key = value: what is wrong; what to write instead"
 * (tdm_err_set with the file and line as the place). The first error stops the reading: after
 * it the reader returns no more lines. ini_parse_stream's result is the first line inih or the
 * handler refused, so a syntax error on an earlier line than ours is reported instead.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "config_pvt.h"
#include "engine_pvt.h"

#define LOAD_MAX_SEEN 160 /* sections and keys one file can hold without an error */
#define REASON_MAX 480

/* A section or key met in the file (key "" for a section), and where. */
struct seen {
	char section[ENG_CONFIG_NAME_MAX];
	char key[ENG_CONFIG_NAME_MAX];
	int line;
};

struct load {
	struct tdm_config *cfg;
	FILE *f;
	int line;              /* lines read: inih's number of the line it works on */
	bool indented;         /* that line starts with a blank (inih: continues the last key) */
	bool header;           /* a "[section]" line came since the last entry */
	int err_line;          /* line of the first problem (0: none); the reader then stops */
	int read_errno;        /* reading the file failed with this */
	char section[ENG_CONFIG_NAME_MAX], key[ENG_CONFIG_NAME_MAX]; /* the last entry */
	struct seen seen[LOAD_MAX_SEEN];
	int n_seen;
};

static int load_fail(struct load *ld, const char *section, const char *name, const char *value,
		     const char *text)
{
	ld->err_line = ld->line;
	if (section[0] == '\0')
		tdm_err_set(TDM_ERR_CONFIG, ld->cfg->path, ld->line, "%s = %s: %s", name, value,
			    text);
	else
		tdm_err_set(TDM_ERR_CONFIG, ld->cfg->path, ld->line, "[%s] %s = %s: %s", section,
			    name, value, text);
	return 0; /* inih: this line is the error */
}

static const struct seen *seen_find(const struct load *ld, const char *section, const char *key)
{
	for (int i = 0; i < ld->n_seen; i++)
		if (strcmp(ld->seen[i].section, section) == 0 && strcmp(ld->seen[i].key, key) == 0)
			return &ld->seen[i];
	return NULL;
}

static int refuse(char *reason, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int refuse(char *reason, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, REASON_MAX, fmt, ap);
	va_end(ap);
	return -1;
}

/* Record section/key on this line; a second one is an error. @return 0 or -1 (reason). */
static int seen_add(struct load *ld, const char *section, const char *key, char *reason)
{
	const struct seen *s = seen_find(ld, section, key);

	if (s != NULL && key[0] != '\0')
		return refuse(reason, "%s is already set on line %d; set each key once", key,
			      s->line);
	if (s != NULL && eng_config_peer_id(section) != 0)
		return refuse(reason, "duplicate peer: [%s] is already defined on line %d; give "
			      "each peer one section", section, s->line);
	if (s != NULL)
		return refuse(reason, "[%s] appears twice (first on line %d); keep its keys in "
			      "one section", section, s->line);
	if (ld->n_seen == LOAD_MAX_SEEN)
		return refuse(reason, "too many entries; a configuration has at most %d sections "
			      "and keys", LOAD_MAX_SEEN);
	struct seen *n = &ld->seen[ld->n_seen++];
	snprintf(n->section, sizeof(n->section), "%s", section);
	snprintf(n->key, sizeof(n->key), "%s", key);
	n->line = ld->line;
	return 0;
}

static int on_entry(void *user, const char *section, const char *name, const char *value)
{
	struct load *ld = user;
	char reason[REASON_MAX];

	if (ld->err_line != 0)
		return 1; /* the reader stops at the next line */
	if (ld->indented && !ld->header && strcmp(section, ld->section) == 0 &&
	    strcmp(name, ld->key) == 0) {
		if (eng_config_entry(ld->cfg, section, name, value, true, reason, REASON_MAX))
			return load_fail(ld, section, name, value, reason);
		return 1;
	}
	if ((ld->header || strcmp(section, ld->section) != 0) &&
	    seen_add(ld, section, "", reason) != 0)
		return load_fail(ld, section, name, value, reason);
	ld->header = false;
	snprintf(ld->section, sizeof(ld->section), "%s", section);
	snprintf(ld->key, sizeof(ld->key), "%s", name);
	if (eng_config_entry(ld->cfg, section, name, value, false, reason, REASON_MAX) != 0 ||
	    seen_add(ld, section, name, reason) != 0)
		return load_fail(ld, section, name, value, reason);
	return 1;
}

/* inih's reader (fgets-like): counts lines and sees what inih does not report. */
static char *read_line(char *buf, int cap, void *user)
{
	struct load *ld = user;
	size_t len;
	int next;

	if (ld->err_line != 0)
		return NULL;
	errno = 0;
	if (fgets(buf, cap, ld->f) == NULL) {
		if (ferror(ld->f))
			ld->read_errno = errno ? errno : EIO;
		return NULL;
	}
	ld->line++;
	len = strlen(buf);
	if (len == (size_t)cap - 1 && buf[len - 1] != '\n' && (next = getc(ld->f)) != EOF) {
		ungetc(next, ld->f);
		ld->err_line = ld->line;
		tdm_err_set(TDM_ERR_CONFIG, ld->cfg->path, ld->line, "the line is longer than %d "
			    "characters; shorten it (eal_args may continue on indented lines)",
			    cap - 2);
		return NULL;
	}
	ld->indented = buf[0] == ' ' || buf[0] == '\t';
	if (buf[0] == '[')
		ld->header = true;
	return buf;
}

/* inih found a line it cannot read: say which and why, with the line's text. */
static int syntax_error(struct load *ld, int line)
{
	char buf[256] = "";

	rewind(ld->f);
	for (int i = 0; i < line && fgets(buf, sizeof(buf), ld->f) != NULL; i++)
		;
	char *text = buf + strspn(buf, " \t");
	text[strcspn(text, "\r\n")] = '\0';
	if (text[0] == '[')
		return tdm_err_set(TDM_ERR_CONFIG, ld->cfg->path, line, "%s: a section header "
				   "without ']'; write [section]", text);
	return tdm_err_set(TDM_ERR_CONFIG, ld->cfg->path, line, "%s: not a [section] or "
			   "key = value line; write key = value (comments start with ; or #)",
			   text);
}

TDM_API int tdm_config_load(struct tdm_config *cfg, const char *path)
{
	struct load *ld;
	int rc, ret;

	if (strlen(path) >= sizeof(cfg->path))
		return TDM_ERR(-ENAMETOOLONG, "configuration file name '%s' is longer than %zu "
			       "characters", path, sizeof(cfg->path) - 1);
	ld = calloc(1, sizeof(*ld));
	if (ld == NULL)
		return TDM_ERR(-ENOMEM, "no memory to read %s", path);
	ld->cfg = cfg;
	ld->f = fopen(path, "r");
	if (ld->f == NULL) {
		rc = -errno;
		free(ld);
		return TDM_ERR(rc, "cannot read configuration file %s: %s", path, strerror(-rc));
	}
	snprintf(cfg->path, sizeof(cfg->path), "%s", path);
	ret = ini_parse_stream(read_line, ld, on_entry, ld);
	if (ld->read_errno != 0) {
		rc = TDM_ERR(-ld->read_errno, "cannot read configuration file %s: %s", path,
			     strerror(ld->read_errno));
	} else if (ret > 0 && (ld->err_line == 0 || ret < ld->err_line)) {
		rc = syntax_error(ld, ret);
	} else if (ld->err_line != 0) {
		rc = TDM_ERR_CONFIG;
	} else if (ret < 0) {
		rc = TDM_ERR(-ENOMEM, "no memory to parse %s", path);
	} else {
		rc = 0;
	}
	fclose(ld->f);
	free(ld);
	return rc;
}

