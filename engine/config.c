/*
 * tandem configuration: the INI file tandemd reads (parsed by inih), command-line overrides,
 * the whole-configuration check, and printing the effective configuration back as a file.
 *
 * THE FILE (the README's "Configuration" section copies this reference)
 *
 *   [node]
 *   id = 1                 this node, 1..65535, unique in the cluster (required)
 *   role = replica         primary | replica | witness (default replica). The role a node
 *                          starts with in a new cluster: after that elections decide which
 *                          data node is primary (a restarted node rejoins as a replica). A
 *                          witness keeps no data and only votes (tandemd --witness)
 *   cluster_id = 42        non-zero, the same on every node: every frame and segment carries
 *                          it (required; decimal or 0x hex)
 *   data_dir = /var/lib/tandem/node1
 *                          log segments, snapshot, status file, control socket (required)
 *   primary = 2            replicas: the first primary's node id, one of the [peer.N]
 *                          (optional: a replica learns the primary from its heartbeats)
 *   threads = 1            0 the embedding program drives the node, 1 one thread runs every
 *                          agent, 2..256 the apply workers get their own threads too
 *   idle = backoff         spin | yield | backoff: what an idle thread does (spin: lowest
 *                          latency, burns its core; yield: lets others run; backoff: spin,
 *                          yield, then sleep up to 1 ms)
 *   [log]
 *   ring_size = 64M        shared-memory ring: a power of two from 64K to 1024G
 *   segment_size = 64M     segment file size: a power of two from 64K to 1024G, the same on
 *                          every node
 *   retention_cap = 0      most bytes of history kept for lagging replicas; 0 = all of it,
 *                          else at least two segments. Sizes take K, M, G (binary: 1K = 1024)
 *   [dataplane]
 *   backend = udp          dpdk | udp
 *   fallback = udp         udp | none: when dpdk cannot start, use udp on the same addresses
 *                          (and say why), or fail
 *   eal_args = --no-huge --no-pci --vdev=net_memif0,role=server
 *                          DPDK EAL arguments separated by blanks; a long list continues on
 *                          indented lines (joined with one space)
 *   address = 127.0.0.1:7000   this node's IPv4:port (udp listens there; dpdk checks it)
 *   mtu = 1500             IP MTU, 576..9000
 *   [peer.2]               one section per other node; N is its node id
 *   address = 127.0.0.1:7001   where it listens (IPv4:port; required)
 *   mac = 02:00:00:00:00:02    dpdk: its MAC; absent = broadcast (memif, veth)
 *   dpdk_port = 0          dpdk: index (in EAL order) of the ethdev that reaches it
 *   witness = no           yes: the peer is a witness (votes, keeps no data, never primary)
 *   [replication]
 *   level = local          default commit level: memory | local | received | durable | applied
 *   quorum = 1             replicas that must reach received/durable/applied (1..peers)
 *   timeout_ms = 1000      commit wait timeout, 1..86400000
 *   on_timeout = fail      fail (the write fails) | degrade (acknowledged at local; later
 *                          writes do not wait for the quorum until it catches up; counted)
 *   hello_ms = 100         replicas: resend HELLO this often until the primary answers
 *   failover_timeout_ms = 1000
 *                          a replica that hears no live primary this long starts an
 *                          election; a primary that hears no majority for 3/4 of it stops
 *                          taking writes (fenced). 0 = no automatic failover and no fencing
 *                          (tandemctl promote/switchover still work). 2..600000 otherwise
 *   mode = primary-replica primary-replica | multi-primary: every node takes writes, streams
 *                          them to every peer, and merges all of them last-writer-wins on
 *                          (hybrid logical clock, node id); role, primary and failover are
 *                          not used, every peer must be a data node
 *   write_mode = any       multi-primary: any (a node cut off keeps taking writes; all
 *                          converge after healing) | majority (refuse writes unless a
 *                          majority of the nodes, this one included, is reachable)
 *   max_clock_offset_ms = 500
 *                          multi-primary: a record stamped further ahead of this node's
 *                          clock is refused (counted, retried) until the clock catches up;
 *                          also the window within which a lost update counts as a conflict
 *   [apply]
 *   workers = 2            apply workers, 1..64 (the store has one shard per worker)
 *   batch = 256            records per apply step, 1..1048576
 *   [faults]               fault injection on frames this node sends (tests, demos)
 *   drop = 0               per mille of frames dropped (0..1000); likewise duplicate,
 *   duplicate = 0          reorder (held back and sent after the next one) and delay
 *   reorder = 0
 *   delay = 0
 *   delay_us = 0           how long a delayed frame is held, 0..60000000
 *   seed = 0               PRNG seed of the fault layer (0: a fixed default)
 *   clock_skew_ms = 0      multi-primary: this node's timestamps run this far ahead (tests
 *                          of max_clock_offset_ms)
 *
 * Syntax (inih): `key = value`, comments on their own line starting with ; or #, or after a
 * value as ` ; text`. A line holds at most 198 characters. Each section and each key appears
 * once. Numbers are decimal or 0x hex.
 *
 * Errors name the place and say what to write: "FILE:LINE: [section] key = value: what is
 * wrong; what to write instead" (config_load.c reads files; this file holds the keys, values,
 * overrides, the check and printing).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "config_pvt.h"
#include "engine_pvt.h"

#define WORD_MAX_LEN 160        /* one EAL argument: fits an indented line */
#define PRINT_WRAP 96           /* print: eal_args continues on a new line after this column */
#define SUGGEST_DISTANCE 2      /* unknown names: suggest a known one this close */

/* ---- The key table: one row per key, driving parsing, checking and printing ---- */

enum kind {
	K_UINT,  /* unsigned number in min..max (written value * scale is stored) */
	K_SIZE,  /* bytes with an optional K/M/G suffix; a power of two when pow2 */
	K_ENUM,  /* one of choices */
	K_STR,   /* text of at most max characters */
	K_WORDS, /* blank-separated words, stored with single spaces; may continue on lines */
	K_ADDR,  /* "IPv4:port": host text at off, ip (network order) at off_ip, port at off_port */
	K_MAC,   /* "aa:bb:cc:dd:ee:ff" */
};

struct choice {
	const char *name;
	unsigned value;
};

struct key {
	const char *section;  /* "node", ...; "peer" for the [peer.N] sections */
	const char *name;
	enum kind kind;
	bool peer;            /* the field is in struct tdm_peer_config, not struct tdm_config */
	bool unset_zero;      /* 0 (or "") means "not set": not printed, checked elsewhere */
	bool sint;            /* the field is a signed int */
	bool pow2;            /* K_SIZE: a power of two */
	size_t off, size, off_ip, off_port;
	uint64_t min, max;    /* K_UINT, K_SIZE: range of the written value; K_STR, K_WORDS:
	                         length */
	uint64_t scale;       /* K_UINT: stored = written * scale (0 = 1) */
	const struct choice *choices; /* K_ENUM, ended by a NULL name */
	const char *want;     /* what to write, for messages */
};

#define CF(f) .off = offsetof(struct tdm_config, f), .size = sizeof(((struct tdm_config *)0)->f)
#define PF(f)                                                                               \
	.peer = true, .off = offsetof(struct tdm_peer_config, f),                           \
	.size = sizeof(((struct tdm_peer_config *)0)->f)
#define SIZE_RANGE .min = 64u << 10, .max = 1ull << 40, .pow2 = true

static const struct choice role_choices[] = {
	{ "primary", TDM_ROLE_PRIMARY }, { "replica", TDM_ROLE_REPLICA },
	{ "witness", TDM_ROLE_WITNESS }, { NULL, 0 },
};
static const struct choice level_choices[] = {
	{ "memory", TDM_LEVEL_MEMORY }, { "local", TDM_LEVEL_LOCAL },
	{ "received", TDM_LEVEL_RECEIVED }, { "durable", TDM_LEVEL_DURABLE },
	{ "applied", TDM_LEVEL_APPLIED }, { NULL, 0 },
};
static const struct choice idle_choices[] = {
	{ "spin", TDM_DP_IDLE_SPIN }, { "yield", TDM_DP_IDLE_YIELD },
	{ "backoff", TDM_DP_IDLE_BACKOFF }, { NULL, 0 },
};
static const struct choice backend_choices[] = {
	{ "dpdk", TDM_DP_BACKEND_DPDK }, { "udp", TDM_DP_BACKEND_UDP }, { NULL, 0 },
};
static const struct choice fallback_choices[] = {
	{ "udp", true }, { "none", false }, { NULL, 0 },
};
static const struct choice yes_no_choices[] = {
	{ "yes", true }, { "no", false }, { NULL, 0 },
};
static const struct choice mode_choices[] = {
	{ "primary-replica", TDM_MODE_PRIMARY_REPLICA }, { "multi-primary", TDM_MODE_MULTI_PRIMARY },
	{ NULL, 0 },
};
static const struct choice write_mode_choices[] = {
	{ "any", TDM_WRITES_ANY }, { "majority", TDM_WRITES_MAJORITY }, { NULL, 0 },
};
static const struct choice on_timeout_choices[] = {
	{ "fail", TDM_ON_TIMEOUT_FAIL }, { "degrade", TDM_ON_TIMEOUT_DEGRADE }, { NULL, 0 },
};

#define PERMILLE(f, what)                                                                    \
	{ .section = "faults", .name = what, .kind = K_UINT, CF(faults.f), .max = 1000,      \
	  .want = "a per mille rate, 0..1000" }

static const struct key keys[] = {
	{ .section = "node", .name = "id", .kind = K_UINT, CF(node_id), .unset_zero = true,
	  .min = 1, .max = UINT16_MAX, .want = "this node's id, 1..65535, unique in the cluster" },
	{ .section = "node", .name = "role", .kind = K_ENUM, CF(role), .choices = role_choices },
	{ .section = "node", .name = "cluster_id", .kind = K_UINT, CF(cluster_id),
	  .unset_zero = true, .min = 1, .max = UINT64_MAX,
	  .want = "a non-zero number (decimal or 0x hex), the same on every node" },
	{ .section = "node", .name = "data_dir", .kind = K_STR, CF(data_dir), .unset_zero = true,
	  .min = 1, .max = 180, .want = "a directory path of at most 180 characters" },
	{ .section = "node", .name = "primary", .kind = K_UINT, CF(primary_id), .unset_zero = true,
	  .min = 1, .max = UINT16_MAX, .want = "the primary's node id (1..65535), a [peer.N]" },
	{ .section = "node", .name = "threads", .kind = K_UINT, CF(threads), .sint = true,
	  .max = 256, .want = "0 (the program drives the node), 1 (one thread) or 2..256" },
	{ .section = "node", .name = "idle", .kind = K_ENUM, CF(idle), .choices = idle_choices },
	{ .section = "log", .name = "ring_size", .kind = K_SIZE, CF(ring_size), SIZE_RANGE,
	  .want = "a power of two from 64K to 1024G (K, M, G are binary)" },
	{ .section = "log", .name = "segment_size", .kind = K_SIZE, CF(segment_size), SIZE_RANGE,
	  .want = "a power of two from 64K to 1024G (K, M, G are binary)" },
	{ .section = "log", .name = "retention_cap", .kind = K_SIZE, CF(retention_cap),
	  .max = 1ull << 60, .want = "0 (keep all) or a size of at least two segments, e.g. 4G" },
	{ .section = "dataplane", .name = "backend", .kind = K_ENUM, CF(backend),
	  .choices = backend_choices },
	{ .section = "dataplane", .name = "fallback", .kind = K_ENUM, CF(fallback_udp),
	  .choices = fallback_choices },
	{ .section = "dataplane", .name = "eal_args", .kind = K_WORDS, CF(eal_args),
	  .unset_zero = true, .max = sizeof(((struct tdm_config *)0)->eal_args) - 1,
	  .want = "DPDK EAL arguments separated by blanks" },
	{ .section = "dataplane", .name = "address", .kind = K_ADDR, CF(local_host),
	  .off_ip = offsetof(struct tdm_config, local_ip),
	  .off_port = offsetof(struct tdm_config, port),
	  .want = "this node's IPv4:port, e.g. 127.0.0.1:7000" },
	{ .section = "dataplane", .name = "mtu", .kind = K_UINT, CF(mtu), .min = 576,
	  .max = TDM_DP_MAX_MTU, .want = "the IP MTU, 576..9000" },
	{ .section = "peer", .name = "address", .kind = K_ADDR, PF(host), .unset_zero = true,
	  .off_ip = offsetof(struct tdm_peer_config, ip),
	  .off_port = offsetof(struct tdm_peer_config, port),
	  .want = "the peer's IPv4:port, e.g. 127.0.0.1:7001" },
	{ .section = "peer", .name = "mac", .kind = K_MAC, PF(mac), .unset_zero = true,
	  .want = "six hex bytes, e.g. 02:00:00:00:00:02" },
	{ .section = "peer", .name = "dpdk_port", .kind = K_UINT, PF(dpdk_port), .max = UINT16_MAX,
	  .want = "the index of the DPDK port that reaches the peer, 0..65535" },
	{ .section = "peer", .name = "witness", .kind = K_ENUM, PF(witness),
	  .choices = yes_no_choices },
	{ .section = "replication", .name = "level", .kind = K_ENUM, CF(level),
	  .choices = level_choices },
	{ .section = "replication", .name = "quorum", .kind = K_UINT, CF(quorum), .sint = true,
	  .min = 1, .max = TDM_MAX_PEERS, .want = "the number of replicas that must reach the "
	  "level, 1..16 (at most the number of peers)" },
	{ .section = "replication", .name = "timeout_ms", .kind = K_UINT, CF(timeout_ms), .min = 1,
	  .max = 86400000, .want = "milliseconds, 1..86400000" },
	{ .section = "replication", .name = "on_timeout", .kind = K_ENUM, CF(on_timeout),
	  .choices = on_timeout_choices },
	{ .section = "replication", .name = "hello_ms", .kind = K_UINT, CF(hello_ms), .min = 1,
	  .max = 60000, .want = "milliseconds, 1..60000" },
	{ .section = "replication", .name = "failover_timeout_ms", .kind = K_UINT,
	  CF(failover_timeout_ms), .max = 600000,
	  .want = "milliseconds, 2..600000, or 0 (no automatic failover)" },
	{ .section = "replication", .name = "mode", .kind = K_ENUM, CF(mode),
	  .choices = mode_choices },
	{ .section = "replication", .name = "write_mode", .kind = K_ENUM, CF(write_mode),
	  .choices = write_mode_choices },
	{ .section = "replication", .name = "max_clock_offset_ms", .kind = K_UINT,
	  CF(max_clock_offset_ms), .min = 1, .max = 3600000,
	  .want = "milliseconds, 1..3600000" },
	{ .section = "apply", .name = "workers", .kind = K_UINT, CF(apply_workers), .sint = true,
	  .min = 1, .max = TDM_APPLY_MAX_WORKERS, .want = "the number of apply workers, 1..64" },
	{ .section = "apply", .name = "batch", .kind = K_UINT, CF(apply_batch), .min = 1,
	  .max = 1u << 20, .want = "records per apply step, 1..1048576" },
	PERMILLE(drop, "drop"),
	PERMILLE(duplicate, "duplicate"),
	PERMILLE(reorder, "reorder"),
	PERMILLE(delay, "delay"),
	{ .section = "faults", .name = "delay_us", .kind = K_UINT, CF(faults.delay_ns),
	  .max = 60000000, .scale = 1000, .want = "microseconds, 0..60000000" },
	{ .section = "faults", .name = "clock_skew_ms", .kind = K_UINT, CF(clock_skew_ms),
	  .max = 3600000, .want = "milliseconds the multi-primary clock runs ahead, 0..3600000" },
	{ .section = "faults", .name = "seed", .kind = K_UINT, CF(faults.seed), .max = UINT64_MAX,
	  .want = "a number (0: the fixed default seed)" },
};

#define N_KEYS (sizeof(keys) / sizeof(keys[0]))

/* Sections in file order; "peer" stands for every [peer.N]. */
static const char *const sections[] = {
	"node", "log", "dataplane", "peer", "replication", "apply", "faults",
};

#define N_SECTIONS (sizeof(sections) / sizeof(sections[0]))

_Static_assert(sizeof(enum tdm_role) == sizeof(unsigned), "enum fields are stored as unsigned");

/* ---- Names ---- */

static const char *choice_name(const struct choice *c, unsigned v)
{
	for (; c->name != NULL; c++)
		if (c->value == v)
			return c->name;
	return NULL;
}

static int choice_find(const struct choice *c, const char *name, unsigned *v)
{
	for (; c->name != NULL; c++) {
		if (strcmp(c->name, name) == 0) {
			*v = c->value;
			return 0;
		}
	}
	return -EINVAL;
}

/* "a, b or c" */
static void choice_list(const struct choice *c, char *buf, size_t cap)
{
	size_t n = 0;

	buf[0] = '\0';
	for (const struct choice *p = c; p->name != NULL && n < cap; p++) {
		const char *sep = p == c ? "" : p[1].name == NULL ? " or " : ", ";
		n += (size_t)snprintf(buf + n, cap - n, "%s%s", sep, p->name);
	}
}

TDM_API const char *tdm_level_name(enum tdm_level level)
{
	const char *name = choice_name(level_choices, (unsigned)level);
	return name != NULL ? name : "?";
}

TDM_API int tdm_level_parse(const char *name, enum tdm_level *out)
{
	unsigned v;

	if (name == NULL || choice_find(level_choices, name, &v) != 0)
		return TDM_ERR(-EINVAL, "unknown commit level '%s': use memory, local, received, "
			       "durable or applied", name != NULL ? name : "(null)");
	*out = (enum tdm_level)v;
	return 0;
}

TDM_API const char *tdm_role_name(enum tdm_role role)
{
	const char *name = role == TDM_ROLE_CANDIDATE ? "candidate"
						      : choice_name(role_choices, (unsigned)role);
	return name != NULL ? name : "?";
}

TDM_API const char *tdm_peer_state_name(enum tdm_peer_state s)
{
	static const char *const names[] = {
		[TDM_PEER_DOWN] = "down", [TDM_PEER_CONNECTING] = "connecting",
		[TDM_PEER_STREAMING] = "streaming", [TDM_PEER_RESYNC] = "resync",
		[TDM_PEER_FAILED] = "failed",
	};
	return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "?";
}

/* ---- Field access ---- */

static void *field(void *base, const struct key *k)
{
	return (char *)base + k->off;
}

static uint64_t get_uint(const void *base, const struct key *k)
{
	const char *p = (const char *)base + k->off;
	uint8_t u8;
	uint16_t u16;
	uint32_t u32;
	uint64_t u64;

	switch (k->size) {
	case 1: memcpy(&u8, p, 1); return u8;
	case 2: memcpy(&u16, p, 2); return u16;
	case 4:
		memcpy(&u32, p, 4);
		return k->sint ? (uint64_t)(int64_t)(int32_t)u32 : u32;
	default: memcpy(&u64, p, 8); return u64;
	}
}

static void put_uint(void *base, const struct key *k, uint64_t v)
{
	char *p = (char *)base + k->off;
	uint8_t u8 = (uint8_t)v;
	uint16_t u16 = (uint16_t)v;
	uint32_t u32 = (uint32_t)v;

	switch (k->size) {
	case 1: memcpy(p, &u8, 1); break;
	case 2: memcpy(p, &u16, 2); break;
	case 4: memcpy(p, &u32, 4); break;
	default: memcpy(p, &v, 8); break;
	}
}

/* ---- Values: parse, check, format ---- */

/* Why a value was refused: "what is wrong; what to write instead". */
struct why {
	char text[480];
};

static int why(struct why *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int why(struct why *w, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(w->text, sizeof(w->text), fmt, ap);
	va_end(ap);
	return -1;
}

/* Decimal, or 0x and hex digits; nothing else. */
static int parse_number(const char *s, uint64_t *out, const char **end)
{
	unsigned base = 10;
	uint64_t v = 0;
	const char *p = s;

	if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
		base = 16;
		p += 2;
	}
	const char *digits = p;
	for (;; p++) {
		unsigned d;
		if (*p >= '0' && *p <= '9')
			d = (unsigned)(*p - '0');
		else if (base == 16 && *p >= 'a' && *p <= 'f')
			d = (unsigned)(*p - 'a') + 10;
		else if (base == 16 && *p >= 'A' && *p <= 'F')
			d = (unsigned)(*p - 'A') + 10;
		else
			break;
		if (v > (UINT64_MAX - d) / base)
			return -ERANGE;
		v = v * base + d;
	}
	if (p == digits)
		return -EINVAL;
	*out = v;
	*end = p;
	return 0;
}

static int parse_size(const char *s, uint64_t *out)
{
	const char *end;
	unsigned shift = 0;
	int rc = parse_number(s, out, &end);

	if (rc < 0)
		return rc;
	switch (*end) {
	case '\0': return 0;
	case 'K': case 'k': shift = 10; break;
	case 'M': case 'm': shift = 20; break;
	case 'G': case 'g': shift = 30; break;
	default: return -EINVAL;
	}
	if (end[1] != '\0')
		return -EINVAL;
	if (*out > UINT64_MAX >> shift)
		return -ERANGE;
	*out <<= shift;
	return 0;
}

static int bad_choice(const struct key *k, struct why *w)
{
	char list[128];

	choice_list(k->choices, list, sizeof(list));
	return why(w, "unknown value; write %s", list);
}

/* A number as written (or an enum's value): in range (a power of two) or a reason. */
static int check_range(const struct key *k, uint64_t v, struct why *w)
{
	if (k->kind == K_ENUM)
		return v <= UINT32_MAX && choice_name(k->choices, (unsigned)v) != NULL
			       ? 0 : bad_choice(k, w);
	if (v < k->min || v > k->max)
		return why(w, "out of range; write %s", k->want);
	if (k->pow2 && (v & (v - 1)) != 0)
		return why(w, "not a power of two; write %s", k->want);
	return 0;
}

static int parse_addr(void *base, const struct key *k, const char *value, struct why *w)
{
	const char *colon = strrchr(value, ':');
	char host[64];
	struct in_addr ip;
	uint64_t port;
	const char *end;

	if (colon == NULL || (size_t)(colon - value) >= sizeof(host))
		return why(w, "not an IPv4:port address; write %s", k->want);
	memcpy(host, value, (size_t)(colon - value));
	host[colon - value] = '\0';
	if (inet_pton(AF_INET, host, &ip) != 1)
		return why(w, "'%s' is not an IPv4 address; write %s", host, k->want);
	if (parse_number(colon + 1, &port, &end) != 0 || *end != '\0')
		return why(w, "the port is not a number; write %s", k->want);
	if (port == 0 || port > UINT16_MAX)
		return why(w, "port out of range; write a port 1..65535, as in %s", k->want);
	uint16_t p16 = (uint16_t)port;
	memcpy((char *)base + k->off, host, strlen(host) + 1);
	memcpy((char *)base + k->off_ip, &ip.s_addr, sizeof(ip.s_addr));
	memcpy((char *)base + k->off_port, &p16, sizeof(p16));
	return 0;
}

static int parse_mac(void *base, const struct key *k, const char *value, struct why *w)
{
	unsigned b[6];
	int n = 0;

	if (sscanf(value, "%2x:%2x:%2x:%2x:%2x:%2x%n", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5],
		   &n) != 6 || value[n] != '\0' || strlen(value) != 17)
		return why(w, "not a MAC address; write %s", k->want);
	uint8_t *mac = field(base, k);
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)b[i];
	return 0;
}

static int parse_str(void *base, const struct key *k, const char *value, struct why *w)
{
	size_t len = strlen(value);

	if (len < k->min)
		return why(w, "empty; write %s", k->want);
	if (len > k->max)
		return why(w, "longer than %" PRIu64 " characters; write %s", k->max, k->want);
	for (const char *p = value; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return why(w, "contains a control character; write %s", k->want);
	/* what a file could not hold: inih reads " ;" as the start of a comment */
	if (value[0] == ';' || strstr(value, " ;") != NULL)
		return why(w, "contains ' ;', which starts a comment in the file; write %s",
			   k->want);
	memcpy(field(base, k), value, len + 1);
	return 0;
}

/* Words separated by blanks, stored with one space between them. */
static int parse_words(void *base, const struct key *k, const char *value, struct why *w)
{
	char buf[sizeof(((struct tdm_config *)0)->eal_args)];
	size_t n = 0;

	for (const char *p = value; *p != '\0';) {
		size_t len = strcspn(p, " \t");
		if (len == 0) {
			p++;
			continue;
		}
		if (len > WORD_MAX_LEN)
			return why(w, "an argument is longer than %d characters; shorten it",
				   WORD_MAX_LEN);
		if (*p == ';' || *p == '#') /* would start a comment on a continuation line */
			return why(w, "an argument starts with '%c', which starts a comment in "
				   "the file; write arguments that do not start with ; or #", *p);
		if (n + (n > 0) + len >= sizeof(buf) || n + (n > 0) + len >= k->size)
			return why(w, "longer than %zu characters; shorten the EAL arguments",
				   k->size - 1);
		if (n > 0)
			buf[n++] = ' ';
		memcpy(buf + n, p, len);
		n += len;
		p += len;
	}
	buf[n] = '\0';
	return parse_str(base, k, buf, w);
}

static int parse_value(void *base, const struct key *k, const char *value, struct why *w)
{
	uint64_t v;
	const char *end;
	unsigned e;
	int rc;

	switch (k->kind) {
	case K_UINT:
		rc = parse_number(value, &v, &end);
		if (rc == -EINVAL || (rc == 0 && *end != '\0'))
			return why(w, "not a number; write %s", k->want);
		if (rc == -ERANGE)
			return why(w, "out of range; write %s", k->want);
		if (check_range(k, v, w) != 0)
			return -1;
		put_uint(base, k, v * (k->scale ? k->scale : 1));
		return 0;
	case K_SIZE:
		rc = parse_size(value, &v);
		if (rc == -EINVAL)
			return why(w, "not a size; write %s", k->want);
		if (rc == -ERANGE)
			return why(w, "out of range; write %s", k->want);
		if (check_range(k, v, w) != 0)
			return -1;
		put_uint(base, k, v);
		return 0;
	case K_ENUM:
		if (choice_find(k->choices, value, &e) != 0)
			return bad_choice(k, w);
		put_uint(base, k, e);
		return 0;
	case K_STR: return parse_str(base, k, value, w);
	case K_WORDS: return parse_words(base, k, value, w);
	case K_ADDR: return parse_addr(base, k, value, w);
	case K_MAC: return parse_mac(base, k, value, w);
	}
	return why(w, "cannot be set");
}

static uint16_t addr_port(const void *base, const struct key *k)
{
	uint16_t port;

	memcpy(&port, (const char *)base + k->off_port, sizeof(port));
	return port;
}

static bool is_unset(const void *base, const struct key *k)
{
	static const uint8_t zero[6];

	if (!k->unset_zero)
		return false;
	switch (k->kind) {
	case K_STR:
	case K_WORDS: return *((const char *)base + k->off) == '\0';
	case K_ADDR: return addr_port(base, k) == 0;
	case K_MAC: return memcmp((const char *)base + k->off, zero, sizeof(zero)) == 0;
	default: return get_uint(base, k) == 0;
	}
}

static void format_size(uint64_t v, char *buf, size_t cap)
{
	static const char suffix[] = "GMK";

	for (int i = 0; i < 3; i++) {
		unsigned shift = 30u - 10u * (unsigned)i;
		if (v != 0 && (v & ((1ull << shift) - 1)) == 0) {
			snprintf(buf, cap, "%" PRIu64 "%c", v >> shift, suffix[i]);
			return;
		}
	}
	snprintf(buf, cap, "%" PRIu64, v);
}

/* The value as the file would hold it. */
static void format_value(const void *base, const struct key *k, char *buf, size_t cap)
{
	const char *p = (const char *)base + k->off;
	uint64_t v = 0;
	char host[INET_ADDRSTRLEN];
	const uint8_t *m = (const uint8_t *)p;
	const char *name;

	if (k->kind == K_UINT || k->kind == K_SIZE || k->kind == K_ENUM)
		v = get_uint(base, k);
	switch (k->kind) {
	case K_UINT:
		if (k->sint)
			snprintf(buf, cap, "%" PRId64, (int64_t)v);
		else
			snprintf(buf, cap, "%" PRIu64, v / (k->scale ? k->scale : 1));
		break;
	case K_SIZE: format_size(v, buf, cap); break;
	case K_ENUM:
		name = choice_name(k->choices, (unsigned)v);
		if (name != NULL)
			snprintf(buf, cap, "%s", name);
		else
			snprintf(buf, cap, "%" PRIu64, v);
		break;
	case K_STR:
	case K_WORDS: snprintf(buf, cap, "%s", p); break;
	case K_ADDR:
		/* built in code: the host text may be missing */
		if (*p == '\0')
			p = inet_ntop(AF_INET, (const char *)base + k->off_ip, host, sizeof(host));
		snprintf(buf, cap, "%s:%u", p, addr_port(base, k));
		break;
	case K_MAC:
		snprintf(buf, cap, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4],
			 m[5]);
		break;
	}
}

/* ---- Sections and keys by name ---- */

static int edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	int row[ENG_CONFIG_NAME_MAX + 1];

	if (la > ENG_CONFIG_NAME_MAX || lb > ENG_CONFIG_NAME_MAX)
		return SUGGEST_DISTANCE + 1;
	for (size_t j = 0; j <= lb; j++)
		row[j] = (int)j;
	for (size_t i = 0; i < la; i++) {
		int diag = row[0];
		row[0] = (int)i + 1;
		for (size_t j = 0; j < lb; j++) {
			int best = diag + (a[i] != b[j]);
			if (row[j] + 1 < best)
				best = row[j] + 1;
			if (row[j + 1] + 1 < best)
				best = row[j + 1] + 1;
			diag = row[j + 1];
			row[j + 1] = best;
		}
	}
	return row[lb];
}

static const struct key *find_key(const char *section, const char *name)
{
	for (size_t i = 0; i < N_KEYS; i++)
		if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].name, name) == 0)
			return &keys[i];
	return NULL;
}

/* "peer.N" with N in 1..65535: its id; 0 otherwise. */
static uint16_t peer_section_id(const char *section)
{
	uint64_t id;
	const char *end;

	if (strncmp(section, "peer.", 5) != 0 || section[5] < '0' || section[5] > '9' ||
	    parse_number(section + 5, &id, &end) != 0 || *end != '\0' || id == 0 ||
	    id > UINT16_MAX)
		return 0;
	return (uint16_t)id;
}

/* The table's name for a section as written ("peer" for peer.N); NULL when unknown. */
static const char *section_kind(const char *section)
{
	if (peer_section_id(section) != 0)
		return "peer";
	for (size_t i = 0; i < N_SECTIONS; i++)
		if (strcmp(sections[i], "peer") != 0 && strcmp(sections[i], section) == 0)
			return sections[i];
	return NULL;
}

static int unknown_section(const char *section, struct why *w)
{
	if (section[0] == '\0')
		return why(w, "outside any section; put it under its section, e.g. [node]");
	if (strncmp(section, "peer", 4) == 0)
		return why(w, "unknown section [%s]; write [peer.N] with N the peer's node id, "
			   "1..65535", section);
	for (size_t i = 0; i < N_SECTIONS; i++)
		if (strcmp(sections[i], "peer") != 0 &&
		    edit_distance(section, sections[i]) <= SUGGEST_DISTANCE)
			return why(w, "unknown section [%s]; did you mean [%s]?", section,
				   sections[i]);
	return why(w, "unknown section [%s]; sections are [node], [log], [dataplane], "
		   "[peer.N], [replication], [apply] and [faults]", section);
}

static int unknown_key(const char *kind, const char *section, const char *name, struct why *w)
{
	char list[256];
	size_t n = 0;

	if (name[0] == '\0')
		return why(w, "no key name before '='; write key = value");
	for (size_t i = 0; i < N_KEYS; i++)
		if (strcmp(keys[i].section, kind) == 0 &&
		    edit_distance(name, keys[i].name) <= SUGGEST_DISTANCE)
			return why(w, "unknown key in [%s]; did you mean %s?", section,
				   keys[i].name);
	for (size_t i = 0; i < N_KEYS; i++)
		if (strcmp(keys[i].name, name) == 0)
			return why(w, "unknown key in [%s]; %s belongs in [%s]", section, name,
				   strcmp(keys[i].section, "peer") == 0 ? "peer.N"
									: keys[i].section);
	list[0] = '\0';
	for (size_t i = 0; i < N_KEYS && n < sizeof(list); i++)
		if (strcmp(keys[i].section, kind) == 0)
			n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%s", n ? ", " : "",
					      keys[i].name);
	return why(w, "unknown key in [%s]; its keys are %s", section, list);
}

/* The peer with this id, added when missing. */
static struct tdm_peer_config *peer_slot(struct tdm_config *cfg, uint16_t id, struct why *w)
{
	for (int i = 0; i < cfg->n_peers; i++)
		if (cfg->peers[i].id == id)
			return &cfg->peers[i];
	if (cfg->n_peers >= TDM_MAX_PEERS) {
		why(w, "too many peers; a cluster has at most %d other nodes", TDM_MAX_PEERS);
		return NULL;
	}
	struct tdm_peer_config *p = &cfg->peers[cfg->n_peers++];
	memset(p, 0, sizeof(*p));
	p->id = id;
	return p;
}

/* Set section.name = value, as a file line or an override would. */
static int set_entry(struct tdm_config *cfg, const char *section, const char *name,
		     const char *value, struct why *w)
{
	const char *kind = section_kind(section);
	const struct key *k;
	void *base = cfg;

	if (kind == NULL)
		return unknown_section(section, w);
	if ((k = find_key(kind, name)) == NULL)
		return unknown_key(kind, section, name, w);
	if (k->peer && (base = peer_slot(cfg, peer_section_id(section), w)) == NULL)
		return -1;
	return parse_value(base, k, value, w);
}

/* ---- Defaults, overrides ---- */

TDM_API void tdm_config_defaults(struct tdm_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->role = TDM_ROLE_REPLICA;
	cfg->threads = 1;
	cfg->idle = TDM_DP_IDLE_BACKOFF;
	cfg->ring_size = 64ull << 20;
	cfg->segment_size = 64ull << 20;
	cfg->backend = TDM_DP_BACKEND_UDP;
	cfg->fallback_udp = true;
	snprintf(cfg->local_host, sizeof(cfg->local_host), "127.0.0.1");
	cfg->local_ip = htonl(INADDR_LOOPBACK);
	cfg->port = 7000;
	cfg->mtu = TDM_DP_DEFAULT_MTU;
	cfg->level = TDM_LEVEL_LOCAL;
	cfg->quorum = 1;
	cfg->timeout_ms = 1000;
	cfg->on_timeout = TDM_ON_TIMEOUT_FAIL;
	cfg->hello_ms = 100;
	cfg->failover_timeout_ms = TDM_FAILOVER_TIMEOUT_MS_DEFAULT;
	cfg->max_clock_offset_ms = TDM_MAX_CLOCK_OFFSET_MS_DEFAULT;
	cfg->apply_workers = 2;
	cfg->apply_batch = 256;
}

TDM_API int tdm_config_set(struct tdm_config *cfg, const char *key, const char *value)
{
	const char *dot = key != NULL ? strrchr(key, '.') : NULL;
	char section[ENG_CONFIG_NAME_MAX], val[sizeof(cfg->eal_args)];
	struct why w;

	if (dot == NULL || dot == key || dot[1] == '\0' ||
	    (size_t)(dot - key) >= sizeof(section) || strlen(dot + 1) >= ENG_CONFIG_NAME_MAX)
		return TDM_ERR(TDM_ERR_CONFIG, "override '%s': write section.key=value, e.g. "
			       "replication.level=durable or peer.2.address=10.0.0.2:7000",
			       key != NULL ? key : "(null)");
	memcpy(section, key, (size_t)(dot - key));
	section[dot - key] = '\0';
	/* Trimmed as inih trims a file's values. */
	if (value == NULL)
		value = "";
	while (*value == ' ' || *value == '\t')
		value++;
	size_t len = strlen(value);
	while (len > 0 && (value[len - 1] == ' ' || value[len - 1] == '\t'))
		len--;
	if (len >= sizeof(val))
		return TDM_ERR(TDM_ERR_CONFIG, "override [%s] %s: the value is longer than %zu "
			       "characters", section, dot + 1, sizeof(val) - 1);
	memcpy(val, value, len);
	val[len] = '\0';
	if (set_entry(cfg, section, dot + 1, val, &w) != 0)
		return TDM_ERR(TDM_ERR_CONFIG, "override [%s] %s = %s: %s", section, dot + 1, val,
			       w.text);
	return 0;
}

/* ---- Entries of a file (config_load.c) ---- */

/* An indented line continues the key before it: eal_args only. */
static int continue_entry(struct tdm_config *cfg, const char *section, const char *name,
			  const char *value, struct why *w)
{
	const char *kind = section_kind(section);
	const struct key *k = kind != NULL ? find_key(kind, name) : NULL;
	char joined[sizeof(cfg->eal_args) + WORD_MAX_LEN + 2];

	if (k == NULL || k->kind != K_WORDS)
		return why(w, "this line is indented, so it continues the value of the line "
			   "before; only eal_args may continue: write each key on its own line "
			   "without leading blanks");
	/* inih keeps " ; comment" in continuation lines: drop it as on a key's line */
	const char *comment = strstr(value, " ;"), *tab = strstr(value, "\t;");
	if (tab != NULL && (comment == NULL || tab < comment))
		comment = tab;
	int len = comment != NULL ? (int)(comment - value) : (int)strlen(value);
	snprintf(joined, sizeof(joined), "%s %.*s", (const char *)field(cfg, k), len, value);
	return parse_value(cfg, k, joined, w);
}

int eng_config_entry(struct tdm_config *cfg, const char *section, const char *name,
		     const char *value, bool more, char *reason, size_t cap)
{
	struct why w;
	int rc = more ? continue_entry(cfg, section, name, value, &w)
		      : set_entry(cfg, section, name, value, &w);

	if (rc != 0)
		snprintf(reason, cap, "%s", w.text);
	return rc;
}

uint16_t eng_config_peer_id(const char *section)
{
	return peer_section_id(section);
}

/* ---- Checking the whole configuration ---- */

/* A failed check: "FILE: text" (the file when loaded from one), recorded as from the caller. */
#define BAD(cfg, ...) check_fail((cfg), __func__, __LINE__, __VA_ARGS__)

static int check_fail(const struct tdm_config *cfg, const char *func, int line, const char *fmt,
		      ...) __attribute__((format(printf, 4, 5)));
static int check_fail(const struct tdm_config *cfg, const char *func, int line, const char *fmt,
		      ...)
{
	char text[700];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	return tdm_err_set(TDM_ERR_CONFIG, func, line, "%s%s%s", cfg->path,
			   cfg->path[0] ? ": " : "", text);
}

/* Every number and name within its key's range (configurations built in code). */
static int check_fields(const struct tdm_config *cfg, const void *base, const char *section,
			bool peer)
{
	char value[64];
	struct why w;

	for (size_t i = 0; i < N_KEYS; i++) {
		const struct key *k = &keys[i];
		if (k->peer != peer || is_unset(base, k) ||
		    (k->kind != K_UINT && k->kind != K_SIZE && k->kind != K_ENUM))
			continue;
		uint64_t v = get_uint(base, k);
		if (check_range(k, k->scale ? v / k->scale : v, &w) != 0) {
			format_value(base, k, value, sizeof(value));
			return BAD(cfg, "[%s] %s = %s: %s", peer ? section : k->section, k->name,
				   value, w.text);
		}
	}
	return 0;
}

static int check_required(const struct tdm_config *cfg)
{
	if (cfg->node_id == 0)
		return BAD(cfg, "[node] id is not set: write id = N, 1..65535, unique in the "
			   "cluster");
	if (cfg->cluster_id == 0)
		return BAD(cfg, "[node] cluster_id is not set: write cluster_id = N, non-zero and "
			   "the same on every node");
	if (cfg->data_dir[0] == '\0')
		return BAD(cfg, "[node] data_dir is not set: write data_dir = a directory for the "
			   "log, snapshot and status file");
	if (cfg->role != TDM_ROLE_PRIMARY && cfg->role != TDM_ROLE_REPLICA &&
	    cfg->role != TDM_ROLE_WITNESS)
		return BAD(cfg, "[node] role = %d: unknown role; write primary, replica or "
			   "witness", (int)cfg->role);
	return 0;
}

static int check_peers(const struct tdm_config *cfg)
{
	char section[16];
	int rc;

	if (cfg->n_peers < 0 || cfg->n_peers > TDM_MAX_PEERS)
		return BAD(cfg, "%d peers: configure 0 to %d [peer.N] sections", cfg->n_peers,
			   TDM_MAX_PEERS);
	for (int i = 0; i < cfg->n_peers; i++) {
		const struct tdm_peer_config *p = &cfg->peers[i];
		snprintf(section, sizeof(section), "peer.%u", p->id);
		if (p->id == 0)
			return BAD(cfg, "peer %d has node id 0: give every peer its node id, "
				   "[peer.N] with N 1..65535", i);
		if (p->id == cfg->node_id)
			return BAD(cfg, "[%s]: %u is this node's own id; list only the other "
				   "nodes as peers", section, p->id);
		for (int j = 0; j < i; j++)
			if (cfg->peers[j].id == p->id)
				return BAD(cfg, "[%s]: duplicate peer; give each peer one section",
					   section);
		if (p->port == 0 || p->ip == 0)
			return BAD(cfg, "[%s] address is not set: write address = IPv4:port, "
				   "where the peer listens", section);
		if ((rc = check_fields(cfg, p, section, true)) != 0)
			return rc;
	}
	return 0;
}

static bool is_peer(const struct tdm_config *cfg, uint16_t id)
{
	for (int i = 0; i < cfg->n_peers; i++)
		if (cfg->peers[i].id == id)
			return true;
	return false;
}

/* Multi-primary: every node is a writer; no witnesses, no failover, no primary to name. */
static int check_multi_primary(const struct tdm_config *cfg)
{
	for (int i = 0; i < cfg->n_peers; i++)
		if (cfg->peers[i].witness)
			return BAD(cfg, "[peer.%u] witness = yes: multi-primary has no elections, "
				   "so no witnesses; remove the peer or set witness = no",
				   cfg->peers[i].id);
	if (cfg->role == TDM_ROLE_WITNESS)
		return BAD(cfg, "[node] role = witness: multi-primary has no elections, so no "
			   "witnesses; remove role (every node takes writes)");
	if (cfg->level >= TDM_LEVEL_RECEIVED && cfg->quorum > cfg->n_peers)
		return BAD(cfg, "[replication] quorum = %d: level %s needs that many peers but %d "
			   "%s configured; lower quorum or add [peer.N] sections", cfg->quorum,
			   tdm_level_name(cfg->level), cfg->n_peers, cfg->n_peers == 1 ? "is" : "are");
	return 0;
}

static int check_replication(const struct tdm_config *cfg)
{
	bool primary = cfg->role == TDM_ROLE_PRIMARY;
	int data_peers = 0;

	for (int i = 0; i < cfg->n_peers; i++)
		data_peers += !cfg->peers[i].witness;
	if (cfg->mode == TDM_MODE_MULTI_PRIMARY) {
		int rc = check_multi_primary(cfg);
		if (rc)
			return rc;
		goto common;
	}
	if (cfg->role == TDM_ROLE_REPLICA && cfg->primary_id != 0 &&
	    !is_peer(cfg, cfg->primary_id))
		return BAD(cfg, "[node] primary = %u: not a configured peer; add a [peer.%u] "
			   "section or fix the id", cfg->primary_id, cfg->primary_id);
	for (int i = 0; i < cfg->n_peers; i++)
		if (cfg->peers[i].id == cfg->primary_id && cfg->peers[i].witness)
			return BAD(cfg, "[node] primary = %u: that peer is a witness, which keeps no "
				   "data; name a data node", cfg->primary_id);
	if (primary && cfg->primary_id != 0 && cfg->primary_id != cfg->node_id)
		return BAD(cfg, "[node] primary = %u: this node is the primary; remove primary, "
			   "or set role = replica", cfg->primary_id);
	/* Only a node that may become primary needs that many replicas: with failover, every
	 * data node. */
	if ((primary || (cfg->role == TDM_ROLE_REPLICA && cfg->failover_timeout_ms)) &&
	    cfg->level >= TDM_LEVEL_RECEIVED && cfg->quorum > data_peers)
		return BAD(cfg, "[replication] quorum = %d: level %s needs that many replicas but "
			   "%d %s configured (witnesses keep no data); lower quorum or add "
			   "[peer.N] sections", cfg->quorum, tdm_level_name(cfg->level), data_peers,
			   data_peers == 1 ? "is" : "are");
	if (cfg->failover_timeout_ms == 1)
		return BAD(cfg, "[replication] failover_timeout_ms = 1: too short for heartbeats; "
			   "write 0 (no automatic failover) or 2..600000");
common:
	if (cfg->retention_cap != 0 && cfg->retention_cap < 2 * cfg->segment_size)
		return BAD(cfg, "[log] retention_cap = %" PRIu64 ": less than two segments; write "
			   "0 (keep all) or at least 2 * segment_size", cfg->retention_cap);
	if (cfg->port == 0)
		return BAD(cfg, "[dataplane] address = %s:0: no port; write IPv4:port, where this "
			   "node listens", cfg->local_host);
	return 0;
}

TDM_API int tdm_config_check(const struct tdm_config *cfg)
{
	int rc;

	if ((rc = check_required(cfg)) != 0 || (rc = check_fields(cfg, cfg, "", false)) != 0 ||
	    (rc = check_peers(cfg)) != 0 || (rc = check_replication(cfg)) != 0)
		return rc;
	return 0;
}

/* ---- Printing ---- */

/* eal_args: words on the first line, then indented continuation lines. */
static void print_words(FILE *out, const char *name, const char *words)
{
	int col = fprintf(out, "%s =", name);

	for (const char *p = words; *p != '\0';) {
		size_t len = strcspn(p, " ");
		if (col > (int)strlen(name) + 2 && col + 1 + (int)len > PRINT_WRAP)
			col = fprintf(out, "\n   ");
		col += fprintf(out, " %.*s", (int)len, p);
		p += len + (p[len] == ' ');
	}
	fputc('\n', out);
}

static void print_section(FILE *out, const char *kind, const char *title, const void *base)
{
	char value[sizeof(((struct tdm_config *)0)->eal_args)];

	fprintf(out, "\n[%s]\n", title);
	for (size_t i = 0; i < N_KEYS; i++) {
		const struct key *k = &keys[i];
		if (strcmp(k->section, kind) != 0 || is_unset(base, k))
			continue;
		if (k->kind == K_WORDS) {
			print_words(out, k->name, (const char *)base + k->off);
			continue;
		}
		format_value(base, k, value, sizeof(value));
		fprintf(out, "%s = %s\n", k->name, value);
	}
}

TDM_API void tdm_config_print(const struct tdm_config *cfg, FILE *out)
{
	char title[16];

	fprintf(out, "; tandem configuration%s%s (effective values; tandemd --config reads it)\n",
		cfg->path[0] ? " from " : "", cfg->path);
	for (size_t s = 0; s < N_SECTIONS; s++) {
		if (strcmp(sections[s], "peer") != 0) {
			print_section(out, sections[s], sections[s], cfg);
			continue;
		}
		for (int i = 0; i < cfg->n_peers; i++) {
			snprintf(title, sizeof(title), "peer.%u", cfg->peers[i].id);
			print_section(out, "peer", title, &cfg->peers[i]);
		}
	}
}
