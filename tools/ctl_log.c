/*
 * tandemctl log: offline inspection of a log directory (verify, dump).
 *
 * Both commands read the segment files with tdm_log_scan(): no ring, no lock, nothing written,
 * so they are safe beside a running tandemd (they see what is on disk when each file is read).
 * dump also reads a side file (the records a truncate moved out of a log) with
 * tdm_log_side_read() when given a file instead of a directory.
 * Errors found in the log are reported on stderr with the file, byte offset, stream position and
 * what to do; summaries and records go to stdout.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ctl.h"
#include "tdm_log.h"

#define VERIFY_PATH "tandemctl log verify"
#define DUMP_PATH "tandemctl log dump"
#define DUMP_KEY_MAX 64u  /* key bytes shown on a human dump line */
#define DUMP_STOP 1       /* scan callback: --limit reached */
#define DUMP_WRITE_ERR 2  /* scan callback: stdout failed; main() reports it */

/* ---- Shared by verify and dump ---- */

/* DIR must name a directory; anything else is a usage error that names it. */
static int check_dir(const char *path, const char *dir)
{
	struct stat st;

	if (stat(dir, &st) != 0)
		return tdm_ctl_usage_error(path, "DIR '%s': %s", dir, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return tdm_ctl_usage_error(path, "DIR '%s' is not a directory", dir);
	return 0;
}

/* One positional argument, DIR, after the options. */
static int take_dir(const char *path, int argc, char **argv, const char **dir)
{
	if (optind >= argc)
		return tdm_ctl_usage_error(path, "missing DIR (the log's segment directory)");
	if (optind + 1 < argc)
		return tdm_ctl_usage_error(path, "unexpected argument '%s'", argv[optind + 1]);
	*dir = argv[optind];
	return check_dir(path, *dir);
}

static const char *advice(int code)
{
	switch (code) {
	case TDM_ERR_CORRUPT:
	case -ENOENT:
		return "restore the file from a replica or run tandemd's resync";
	case TDM_ERR_VERSION:
		return "read it with the tandem version that wrote it";
	case TDM_ERR_CLUSTER:
		return "check the directory and --cluster";
	case -EINVAL:
		return "a log's segment size cannot change: restore the file from a replica";
	case -EACCES:
	case -EPERM:
		return "run as a user that may read the log directory";
	default:
		return "check the file, and the kernel log (dmesg) for I/O errors";
	}
}

/* A problem found in the log, as shown on stderr and in verify's JSON. */
struct problem {
	int code;          /* 0: none */
	const char *file;  /* where it was found */
	bool located;      /* offset (and, for a log, position) are known */
	bool no_position;  /* located, but the stream position is not known (a side file) */
	uint64_t offset;   /* byte offset in file */
	uint64_t position; /* stream position */
	const char *text;  /* what is wrong */
	const char *todo;  /* what to do; NULL: advice(code) */
};

static void problem_from_scan(struct problem *p, const char *dir,
			      const struct tdm_log_scan_report *r)
{
	*p = (struct problem){ .code = r->error };
	p->located = r->error_file[0] != '\0';
	p->file = p->located ? r->error_file : dir;
	p->offset = r->error_offset;
	p->position = r->error_position;
	/* the scan's own text, else the thread's message, else the code's name */
	p->text = r->error_text[0] != '\0' ? r->error_text : tdm_ctl_errmsg();
	if (p->text == NULL)
		p->text = tdm_strerror(r->error);
}

static void print_problem(const char *path, const struct problem *p)
{
	fflush(stdout); /* records or summary first, then the error, on a shared terminal */
	fprintf(stderr, "%s: error in %s", path, p->file);
	if (p->located)
		fprintf(stderr, " at byte offset %" PRIu64, p->offset);
	if (p->located && !p->no_position)
		fprintf(stderr, " (stream position %" PRIu64 " = 0x%" PRIx64 ")", p->position,
			p->position);
	fprintf(stderr, ": %s [%s]\n", p->text, tdm_strerror(p->code));
	fprintf(stderr, "%s: what to do: %s; nothing was changed\n", path,
		p->todo != NULL ? p->todo : advice(p->code));
}

static void print_torn_warning(const char *path, const char *dir,
			       const struct tdm_log_scan_report *r)
{
	fflush(stdout);
	fprintf(stderr,
		"%s: warning: torn tail of %" PRIu64 " bytes after position %" PRIu64
		" (checkpoint %" PRIu64 "): the last writes before a crash did not finish.\n"
		"%s: recovery (tandemd start) cuts them and saves them to %s/cut-%016" PRIx64
		".bin; nothing was changed\n",
		path, r->torn_bytes, r->end, r->checkpoint, path, dir, r->end);
}

/* ---- verify ---- */

/* Most entries a history file holds (log/history.c refuses more). */

struct verify_state {
	bool have_last;        /* any record seen */
	uint64_t last;         /* position of the last valid record (PAD excluded) */
	int epochs;            /* entries in the history file */
	struct tdm_log_epoch_start last_epoch; /* its newest entry, when epochs > 0 */
	char history_file[600];
};

static int on_verify_rec(void *ctx, const struct tdm_log_rec *rec)
{
	struct verify_state *st = ctx;

	st->have_last = true;
	st->last = rec->hdr->position;
	return 0;
}

/* Read DIR/history; a problem is reported in p. */
static void verify_history(const char *dir, struct verify_state *st, struct problem *p)
{
	struct tdm_log_epoch_start *h = malloc(TDM_LOG_HISTORY_MAX * sizeof(*h));

	snprintf(st->history_file, sizeof(st->history_file), "%s/history", dir);
	tdm_err_clear();
	int n = h != NULL ? tdm_log_history_read(dir, h, TDM_LOG_HISTORY_MAX) : -ENOMEM;
	if (n < 0) {
		const char *text = tdm_ctl_errmsg();
		*p = (struct problem){ .code = n, .file = st->history_file, .located = false,
				       .text = text != NULL ? text : tdm_strerror(n) };
	} else {
		st->epochs = n;
		if (n > 0)
			st->last_epoch = h[n - 1];
	}
	free(h);
}

static void print_pos(const char *label, uint64_t pos)
{
	printf("  %-12s %" PRIu64 " (0x%" PRIx64 ")\n", label, pos, pos);
}

static const char *verify_result(const struct tdm_log_scan_report *r, const struct problem *p,
				 bool json)
{
	if (p->code != 0)
		return json ? "error" : "ERROR (see below)";
	if (r->torn_bytes != 0)
		return json ? "torn_tail" : "sound, with a torn tail (warning below)";
	if (r->segments == 0)
		return json ? "empty" : "empty (no segment files)";
	return json ? "ok" : "sound";
}

static void verify_human(const char *dir, const struct tdm_log_scan_report *r,
			 const struct verify_state *st, const struct problem *p)
{
	printf("log %s: %s\n", dir, verify_result(r, p, false));
	printf("  %-12s %" PRIu32 "\n", "segments", r->segments);
	if (r->segments > 0)
		print_pos("first", r->start);
	if (p->code == 0)
		print_pos("end", r->end); /* known only when the scan finished */
	if (st->have_last)
		print_pos(p->code == 0 ? "last record" : "last good", st->last);
	else
		printf("  %-12s none\n", "last record");
	printf("  %-12s %" PRIu64 " (PAD included)%s\n", "records", r->records,
	       p->code == 0 ? "" : ", before the error");
	if (p->code != 0)
		return;
	print_pos("checkpoint", r->checkpoint);
	printf("  %-12s %" PRIu64 " bytes\n", "torn tail", r->torn_bytes);
	if (st->epochs > 0)
		printf("  %-12s %d epoch%s, the last is %" PRIu32 " from position %" PRIu64 "\n",
		       "history", st->epochs, st->epochs == 1 ? "" : "s", st->last_epoch.epoch,
		       st->last_epoch.start);
	else
		printf("  %-12s no epoch begun\n", "history");
}

static void json_text_field(const char *name, const char *text)
{
	printf(",\"%s\":", name);
	tdm_ctl_json_str(stdout, text, strlen(text), false);
}

static void verify_json(const char *dir, const struct tdm_log_scan_report *r,
			const struct verify_state *st, const struct problem *p)
{
	fputs("{\"dir\":", stdout);
	tdm_ctl_json_str(stdout, dir, strlen(dir), false);
	printf(",\"result\":\"%s\",\"segments\":%" PRIu32 ",\"start\":%" PRIu64 ",\"end\":",
	       verify_result(r, p, true), r->segments, r->start);
	if (p->code == 0)
		printf("%" PRIu64, r->end);
	else
		fputs("null", stdout); /* known only when the scan finished */
	fputs(",\"last_record\":", stdout);
	if (st->have_last)
		printf("%" PRIu64, st->last);
	else
		fputs("null", stdout);
	printf(",\"records\":%" PRIu64 ",\"checkpoint\":%" PRIu64 ",\"torn_bytes\":%" PRIu64
	       ",\"epochs\":%d,\"last_epoch\":",
	       r->records, r->checkpoint, r->torn_bytes, st->epochs);
	if (st->epochs > 0)
		printf("{\"epoch\":%" PRIu32 ",\"start\":%" PRIu64 "}", st->last_epoch.epoch,
		       st->last_epoch.start);
	else
		fputs("null", stdout);
	fputs(",\"error\":", stdout);
	if (p->code == 0) {
		fputs("null}\n", stdout);
		return;
	}
	printf("{\"code\":%d", p->code);
	json_text_field("name", tdm_strerror(p->code));
	json_text_field("file", p->file);
	if (p->located)
		printf(",\"offset\":%" PRIu64 ",\"position\":%" PRIu64, p->offset, p->position);
	else
		fputs(",\"offset\":null,\"position\":null", stdout);
	json_text_field("message", p->text);
	json_text_field("advice", advice(p->code));
	fputs("}}\n", stdout);
}

static void verify_help(void)
{
	fputs("Usage: " VERIFY_PATH " DIR [--cluster ID] [--json]\n"
	      "\n"
	      "Check the log in DIR: every segment file's header (magic, version, cluster, size),\n"
	      "that the segments are contiguous, each record's length, type, position and CRC32C,\n"
	      "and the history file. Read-only: takes no lock and changes nothing, so it is safe\n"
	      "beside a running tandemd.\n"
	      "\n"
	      "Options:\n"
	      "  -c, --cluster ID  check that every segment belongs to cluster ID (default 0: any)\n"
	      "  -j, --json        print the summary as one JSON object: dir, result (ok, empty,\n"
	      "                    torn_tail or error), segments, start, end, last_record,\n"
	      "                    records, checkpoint, torn_bytes, epochs, last_epoch {epoch,\n"
	      "                    start}, error {code, name, file, offset, position, message,\n"
	      "                    advice}; null where there is none\n"
	      "  -h, --help        show this help\n"
	      "Numbers are decimal, or hex with 0x.\n"
	      "\n"
	      "Exit status:\n"
	      "  0  the log is sound. A torn tail past the checkpoint (writes cut short by a crash)\n"
	      "     is a warning: tandemd's recovery cuts it and saves it to DIR/cut-<pos>.bin.\n"
	      "  1  an error was found; stderr names the file, byte offset and stream position\n"
	      "     and what to do.\n"
	      "  2  usage error.\n",
	      stdout);
}

static int verify_run(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "cluster", required_argument, NULL, 'c' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t cluster = 0;
	bool json = false;
	const char *dir = NULL;
	int ret;

	optind = 0;
	while ((ret = getopt_long(argc, argv, ":c:jh", opts, NULL)) != -1) {
		switch (ret) {
		case 'c':
			if (tdm_ctl_parse_u64(VERIFY_PATH, "--cluster", optarg, &cluster) != 0)
				return TDM_CTL_EXIT_USAGE;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			verify_help();
			return TDM_CTL_EXIT_OK;
		default:
			return tdm_ctl_bad_option(VERIFY_PATH, ret, argv, opts);
		}
	}
	if (take_dir(VERIFY_PATH, argc, argv, &dir) != 0)
		return TDM_CTL_EXIT_USAGE;

	struct tdm_log_scan_report rep;
	struct verify_state st = { 0 };
	struct problem prob = { 0 };
	memset(&rep, 0, sizeof(rep));
	tdm_err_clear();
	ret = tdm_log_scan(dir, cluster, 0, on_verify_rec, &st, &rep);
	if (ret < 0 && rep.error == 0)
		rep.error = ret;
	if (rep.error != 0)
		problem_from_scan(&prob, dir, &rep);
	else
		verify_history(dir, &st, &prob);

	if (json)
		verify_json(dir, &rep, &st, &prob);
	else
		verify_human(dir, &rep, &st, &prob);
	if (prob.code != 0) {
		print_problem(VERIFY_PATH, &prob);
		return TDM_CTL_EXIT_ERROR;
	}
	if (rep.torn_bytes != 0)
		print_torn_warning(VERIFY_PATH, dir, &rep);
	return TDM_CTL_EXIT_OK;
}

/* ---- dump ---- */

struct dump_state {
	bool json;
	uint64_t limit; /* records still to print; UINT64_MAX: no limit */
	uint64_t from;  /* side file: records before this position are not printed */
	const char *side_path;                 /* side file being dumped, else NULL */
	const struct tdm_log_side_info *side;  /* its header, once read */
	bool side_header_done;                 /* the header line was printed */
};

/* EPOCH records carry the previous epoch as a u64 LE value. */
static bool prev_epoch(const struct tdm_log_rec *rec, uint64_t *out)
{
	if (rec->hdr->type != TDM_LOG_REC_EPOCH || rec->hdr->value_len != 8)
		return false;
	*out = 0;
	for (int i = 7; i >= 0; i--)
		*out = (*out << 8) | rec->value[i];
	return true;
}

static void dump_human(const struct tdm_log_rec *rec)
{
	const struct tdm_log_rec_hdr *h = rec->hdr;
	uint64_t prev;

	printf("%" PRIu64 " %-5s epoch=%" PRIu32 " origin=%" PRIu16 " hlc=%" PRIu64
	       " len=%" PRIu32 " value_len=%" PRIu32,
	       h->position, tdm_log_rec_type_name(h->type), h->epoch, h->origin, h->hlc,
	       h->length, h->value_len);
	if (prev_epoch(rec, &prev))
		printf(" prev_epoch=%" PRIu64, prev);
	printf(" key_len=%" PRIu32 " key=\"", h->key_len);
	tdm_ctl_print_escaped(stdout, rec->key, h->key_len, DUMP_KEY_MAX);
	fputs("\"\n", stdout);
}

static void dump_json(const struct tdm_log_rec *rec)
{
	const struct tdm_log_rec_hdr *h = rec->hdr;
	uint64_t prev;

	printf("{\"position\":%" PRIu64 ",\"type\":\"%s\",\"epoch\":%" PRIu32
	       ",\"origin\":%" PRIu16 ",\"hlc\":%" PRIu64 ",\"flags\":%u,\"length\":%" PRIu32
	       ",\"value_len\":%" PRIu32,
	       h->position, tdm_log_rec_type_name(h->type), h->epoch, h->origin, h->hlc,
	       (unsigned)h->flags, h->length, h->value_len);
	if (prev_epoch(rec, &prev))
		printf(",\"prev_epoch\":%" PRIu64, prev);
	printf(",\"key_len\":%" PRIu32 ",\"key\":", h->key_len);
	tdm_ctl_json_str(stdout, rec->key, h->key_len, true);
	fputs("}\n", stdout);
}

static int on_dump_rec(void *ctx, const struct tdm_log_rec *rec)
{
	struct dump_state *st = ctx;

	if (st->json)
		dump_json(rec);
	else
		dump_human(rec);
	if (ferror(stdout))
		return DUMP_WRITE_ERR;
	return --st->limit == 0 ? DUMP_STOP : 0;
}

/* ---- dump of a side file ---- */

/* The side file's header: one "#" line, or one JSON object before the records' objects. */
static void dump_side_header(struct dump_state *st)
{
	const struct tdm_log_side_info *in = st->side;

	st->side_header_done = true;
	if (st->json) {
		fputs("{\"side_file\":", stdout);
		tdm_ctl_json_str(stdout, st->side_path, strlen(st->side_path), false);
		printf(",\"node_id\":%" PRIu16 ",\"cluster_id\":%" PRIu64 ",\"first\":%" PRIu64
		       ",\"end\":%" PRIu64 ",\"epoch\":%" PRIu32 ",\"count\":%" PRIu64 "}\n",
		       in->node_id, in->cluster_id, in->first, in->end, in->epoch, in->count);
		return;
	}
	printf("# side file %s: %" PRIu64 " record%s cut from the log of node %" PRIu16
	       " (cluster %" PRIu64 ") at position %" PRIu64 " (0x%" PRIx64 "); that log ended at %"
	       PRIu64 " (0x%" PRIx64 "); epoch of the first record %" PRIu32 "\n",
	       st->side_path, in->count, in->count == 1 ? "" : "s", in->node_id, in->cluster_id,
	       in->first, in->first, in->end, in->end, in->epoch);
}

static int on_dump_side_rec(void *ctx, const struct tdm_log_rec *rec)
{
	struct dump_state *st = ctx;

	if (!st->side_header_done)
		dump_side_header(st);
	if (rec->hdr->position < st->from)
		return 0;
	return on_dump_rec(ctx, rec);
}

static int dump_side(const char *path, struct dump_state *st)
{
	struct tdm_log_side_info info;
	int ret;

	st->side_path = path;
	st->side = &info;
	tdm_err_clear();
	ret = tdm_log_side_read(path, &info, on_dump_side_rec, st);
	if (ret == DUMP_STOP || ret == DUMP_WRITE_ERR)
		return TDM_CTL_EXIT_OK; /* main() reports a failed stdout */
	if (!st->side_header_done && info.count != 0)
		dump_side_header(st); /* the header was good: show it before any error */
	if (ret == 0)
		return TDM_CTL_EXIT_OK;

	struct problem prob = { .code = ret, .file = path };
	const char *text = tdm_ctl_errmsg();
	if (ret == TDM_ERR_CORRUPT) {
		prob.located = prob.no_position = true;
		prob.offset = info.error_offset;
		prob.text = info.error_text;
		prob.todo = info.count != 0
				    ? "the records before the damage were printed; the rest of the file "
				      "cannot be trusted"
				    : "give a log directory or a side file written by a truncate";
	} else {
		prob.text = text != NULL ? text : tdm_strerror(ret);
	}
	print_problem(DUMP_PATH, &prob);
	return TDM_CTL_EXIT_ERROR;
}

/* DIR (a log) or FILE (a side file) after the options. */
static int take_dump_input(int argc, char **argv, const char **in, bool *is_file)
{
	struct stat st;

	if (optind >= argc)
		return tdm_ctl_usage_error(DUMP_PATH, "missing DIR (the log's segment directory) or "
					   "FILE (a side file)");
	if (optind + 1 < argc)
		return tdm_ctl_usage_error(DUMP_PATH, "unexpected argument '%s'", argv[optind + 1]);
	*in = argv[optind];
	if (stat(*in, &st) != 0)
		return tdm_ctl_usage_error(DUMP_PATH, "DIR or FILE '%s': %s", *in, strerror(errno));
	*is_file = S_ISREG(st.st_mode);
	if (!*is_file && !S_ISDIR(st.st_mode))
		return tdm_ctl_usage_error(DUMP_PATH, "'%s' is neither a directory nor a regular "
					   "file", *in);
	return 0;
}

static void dump_help(void)
{
	fputs("Usage: " DUMP_PATH " DIR [--from POS] [--limit N] [--json]\n"
	      "       " DUMP_PATH " FILE [--from POS] [--limit N] [--json]\n"
	      "\n"
	      "Print the records of the log in DIR in position order, one per line, checking\n"
	      "each one as verify does. Read-only: takes no lock and changes nothing.\n"
	      "\n"
	      "FILE is a side file: the records a node moved out of its log when it cut the log\n"
	      "back to where it diverged from the primary (tandemd names it in its log). Its\n"
	      "header comes first, as a line starting with \"# side file\" (the node, cluster,\n"
	      "the cut position, where the log ended, the first record's epoch, the count), or\n"
	      "with --json as an object with side_file, node_id, cluster_id, first, end, epoch\n"
	      "and count; then its records as below, each checked (length, type, position, CRC).\n"
	      "\n"
	      "Options:\n"
	      "  -f, --from POS   start at the first record at or after stream position POS\n"
	      "                   (default 0)\n"
	      "  -n, --limit N    stop after N records (N >= 1)\n"
	      "  -j, --json       JSON Lines: one object per record\n"
	      "  -h, --help       show this help\n"
	      "Numbers are decimal, or hex with 0x.\n"
	      "\n"
	      "A line: POSITION TYPE epoch= origin= hlc= len= value_len= [prev_epoch=] key_len=\n"
	      "key=\"...\". len is the record's length (PAD: the span it fills); the key shows\n"
	      "printable ASCII as is, other bytes as \\xNN, and is cut after 64 bytes with \"...\".\n"
	      "\n"
	      "JSON fields: position, type, epoch, origin, hlc, flags, length, value_len,\n"
	      "prev_epoch (EPOCH records), key_len, key. Numbers are exact unsigned integers\n"
	      "(hlc may exceed 2^53). \"key\" is the whole key with one character per byte,\n"
	      "U+0000..U+00FF (printable ASCII as is, the rest as \\u00XX): in Python,\n"
	      "rec[\"key\"].encode(\"latin-1\") gives the exact bytes back.\n"
	      "\n"
	      "Exit status: 0 done (a torn tail is a warning on stderr); 1 an error was found\n"
	      "(records before it were printed; stderr names the file, offset and position), or\n"
	      "FILE is not a side file or is damaged; 2 usage error.\n",
	      stdout);
}

static int dump_run(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "from", required_argument, NULL, 'f' },
		{ "limit", required_argument, NULL, 'n' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct dump_state st = { .json = false, .limit = UINT64_MAX };
	uint64_t from = 0;
	const char *dir = NULL;
	bool is_file = false;
	int ret;

	optind = 0;
	while ((ret = getopt_long(argc, argv, ":f:n:jh", opts, NULL)) != -1) {
		switch (ret) {
		case 'f':
			if (tdm_ctl_parse_u64(DUMP_PATH, "--from", optarg, &from) != 0)
				return TDM_CTL_EXIT_USAGE;
			break;
		case 'n':
			if (tdm_ctl_parse_u64(DUMP_PATH, "--limit", optarg, &st.limit) != 0)
				return TDM_CTL_EXIT_USAGE;
			if (st.limit == 0)
				return tdm_ctl_usage_error(DUMP_PATH, "--limit: must be at least 1");
			break;
		case 'j':
			st.json = true;
			break;
		case 'h':
			dump_help();
			return TDM_CTL_EXIT_OK;
		default:
			return tdm_ctl_bad_option(DUMP_PATH, ret, argv, opts);
		}
	}
	if (take_dump_input(argc, argv, &dir, &is_file) != 0)
		return TDM_CTL_EXIT_USAGE;
	if (is_file) {
		st.from = from;
		return dump_side(dir, &st);
	}

	struct tdm_log_scan_report rep;
	memset(&rep, 0, sizeof(rep));
	tdm_err_clear();
	ret = tdm_log_scan(dir, 0, from, on_dump_rec, &st, &rep);
	if (ret == DUMP_STOP || ret == DUMP_WRITE_ERR)
		return TDM_CTL_EXIT_OK; /* main() reports a failed stdout */
	if (ret < 0 && rep.error == 0)
		rep.error = ret;
	if (rep.error != 0) {
		struct problem prob;
		problem_from_scan(&prob, dir, &rep);
		print_problem(DUMP_PATH, &prob);
		return TDM_CTL_EXIT_ERROR;
	}
	if (rep.torn_bytes != 0)
		print_torn_warning(DUMP_PATH, dir, &rep);
	return TDM_CTL_EXIT_OK;
}

/* ---- tandemctl log ---- */

static const struct tdm_ctl_cmd log_cmds[] = {
	{ "verify", "check every segment and record; print a summary", verify_run },
	{ "dump", "print the records, as text or JSON Lines", dump_run },
};

static const struct tdm_ctl_group log_group = {
	.path = "tandemctl log",
	.about = "Inspect a log directory (the segment files) offline. Read-only: takes no lock\n"
		 "and changes nothing, so it is safe beside a running tandemd.",
	.cmds = log_cmds,
	.ncmds = sizeof(log_cmds) / sizeof(log_cmds[0]),
};

int tdm_ctl_log_run(int argc, char **argv)
{
	return tdm_ctl_dispatch(&log_group, argc, argv);
}
