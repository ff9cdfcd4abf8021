/*
 * The control socket DATA_DIR/ctl.sock: tandemctl's get and digest (status needs no socket: it
 * reads the status file). The engine agent polls it once per slow tick and answers one request
 * per connection; requests are tiny and rare, so the short blocking read is bounded by a
 * receive timeout.
 *
 * Request:  u32 op, u32 argument length, argument bytes. Ops: 1 get (the key), 2 digest,
 *           3 switchover (u16 target node), 4 promote (u8 force), 5 cut (u16 peer, 0 = every
 *           peer; u8 1 cut, 0 heal: fault injection for tests and demos), 6 get many
 *           (repeated u16 key length + key; at most CTL_MANY_MAX bytes), 7 conflicts (u32
 *           most records wanted).
 * Response: i32 code, u32 value length, u64 digest, u64 applied, u64 keys, value bytes (get:
 *           the value; switchover/promote/cut failures: the error message; get many: per
 *           key i32 code, u32 value length, value; conflicts: struct
 *           tdm_store_conflict_rec records, newest first).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "engine_pvt.h"

enum { CTL_GET = 1, CTL_DIGEST = 2, CTL_SWITCHOVER = 3, CTL_PROMOTE = 4, CTL_CUT = 5,
       CTL_GET_MANY = 6, CTL_CONFLICTS = 7 };

#define CTL_MANY_MAX (1u << 20) /* bytes of keys in one get-many request */

struct ctl_req {
	uint32_t op, klen;
};

struct ctl_resp {
	int32_t code;
	uint32_t vlen;
	uint64_t digest, applied, keys;
};

static int ctl_addr(const char *data_dir, struct sockaddr_un *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if ((size_t)snprintf(sa->sun_path, sizeof(sa->sun_path), "%s/ctl.sock", data_dir) >=
	    sizeof(sa->sun_path))
		return TDM_ERR(-ENAMETOOLONG, "data_dir %s is too long for a control socket path "
			       "(at most %zu bytes)", data_dir, sizeof(sa->sun_path) - 10);
	return 0;
}

int eng_ctl_open(struct tdm_node *n)
{
	struct sockaddr_un sa;
	int rc = ctl_addr(n->cfg.data_dir, &sa), fd;

	if (rc)
		return rc;
	unlink(sa.sun_path); /* a stale socket of a previous run: the data_dir lock is ours */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 8) != 0) {
		rc = -errno;
		if (fd >= 0)
			close(fd);
		return TDM_ERR(rc, "cannot listen on %s: %s", sa.sun_path, strerror(-rc));
	}
	snprintf(n->shm->ctl_path, sizeof(n->shm->ctl_path), "%s", sa.sun_path);
	n->ctl_fd = fd;
	return 0;
}

void eng_ctl_close(struct tdm_node *n)
{
	if (n->ctl_fd < 0)
		return;
	close(n->ctl_fd);
	unlink(n->shm->ctl_path);
	n->ctl_fd = -1;
}

static bool read_full(int fd, void *buf, size_t len)
{
	for (size_t got = 0; got < len;) {
		ssize_t r = read(fd, (char *)buf + got, len - got);
		if (r <= 0)
			return false;
		got += (size_t)r;
	}
	return true;
}

static bool write_full(int fd, const void *buf, size_t len)
{
	for (size_t put = 0; put < len;) {
		ssize_t w = write(fd, (const char *)buf + put, len - put);
		if (w <= 0)
			return false;
		put += (size_t)w;
	}
	return true;
}

/* switchover, promote, cut: @return 0 or an error code (tdm_errmsg says why). */
static int control(struct tdm_node *n, uint32_t op, const uint8_t *arg, uint32_t len)
{
	uint16_t id = 0;
	int rc;

	if (len >= 2)
		memcpy(&id, arg, 2);
	tdm_err_clear();
	switch (op) {
	case CTL_SWITCHOVER:
		return len == 2 ? eng_switchover(n, id) : -EINVAL;
	case CTL_PROMOTE:
		return len == 1 ? eng_promote(n, arg[0] != 0) : -EINVAL;
	case CTL_CUT:
		if (len != 3)
			return -EINVAL;
		for (int i = 0; i < n->cfg.n_peers; i++) {
			if (id && n->cfg.peers[i].id != id)
				continue;
			rc = tdm_dp_cut(tdm_dp_transport(n->dp), n->cfg.peers[i].id, arg[2] != 0);
			if (rc)
				return rc;
		}
		eng_log(n, "fault injection: link to %s%u %s", id ? "node " : "every peer", id,
			arg[2] ? "cut" : "healed");
		return 0;
	}
	return -EINVAL;
}

/* A response body that grows as values are appended to it. */
struct ctl_out {
	uint8_t *p;
	size_t len, cap;
};

static bool out_reserve(struct ctl_out *o, size_t more)
{
	size_t cap = o->cap ? o->cap : 4096;
	uint8_t *p;

	if (o->p && o->cap - o->len >= more)
		return true;
	while (cap - o->len < more)
		cap *= 2;
	p = realloc(o->p, cap);
	if (!p)
		return false;
	o->p = p;
	o->cap = cap;
	return true;
}

/* Append key's value to o, growing o until it fits. @return the store's code (*vlen is 0 unless
 * it is 0), or -ENOMEM. */
static int32_t out_get(struct tdm_node *n, struct ctl_out *o, const void *key, uint32_t klen,
		       uint32_t *vlen)
{
	int32_t code;

	*vlen = 0;
	if (!out_reserve(o, 1))
		return -ENOMEM;
	for (;;) {
		code = tdm_store_get(n->store, key, klen, o->p + o->len,
				     (uint32_t)(o->cap - o->len), vlen, NULL, NULL);
		if (code || *vlen <= o->cap - o->len)
			break;
		if (!out_reserve(o, *vlen))
			return -ENOMEM;
	}
	if (code)
		*vlen = 0;
	o->len += *vlen;
	return code;
}

/* Get many: answer every key of the request, in order. */
static void serve_many(struct tdm_node *n, int fd, const uint8_t *req, uint32_t len)
{
	struct ctl_resp rs = { 0 };
	struct ctl_out o = { 0 };

	for (uint32_t off = 0; off + 2 <= len && rs.code == 0;) {
		uint16_t klen;
		uint32_t vlen;
		int32_t code;
		size_t at = o.len;

		memcpy(&klen, req + off, 2);
		off += 2;
		if (klen > len - off)
			break;
		if (!out_reserve(&o, 8)) {
			rs.code = -ENOMEM;
			break;
		}
		o.len += 8;
		code = out_get(n, &o, req + off, klen, &vlen);
		if (code == -ENOMEM)
			rs.code = -ENOMEM;
		memcpy(o.p + at, &code, 4);
		memcpy(o.p + at + 4, &vlen, 4);
		off += klen;
	}
	rs.vlen = rs.code ? 0 : (uint32_t)o.len;
	if (write_full(fd, &rs, sizeof(rs)) && rs.vlen)
		write_full(fd, o.p, o.len);
	free(o.p);
}

static void serve(struct tdm_node *n, int fd)
{
	struct ctl_req rq;
	struct ctl_resp rs = { 0 };
	uint8_t key[TDM_LOG_MAX_KEY];
	uint8_t *val = NULL;

	if (!read_full(fd, &rq, sizeof(rq)))
		return;
	if (rq.op == CTL_GET_MANY && n->store && rq.klen <= CTL_MANY_MAX) {
		uint8_t *req = malloc(rq.klen ? rq.klen : 1);

		if (req && read_full(fd, req, rq.klen))
			serve_many(n, fd, req, rq.klen);
		free(req);
		return;
	}
	if (rq.klen > TDM_LOG_MAX_KEY || !read_full(fd, key, rq.klen))
		return;
	if (n->store) {
		rs.applied = eng_applied(n);
		rs.digest = tdm_store_digest(n->store);
		rs.keys = tdm_store_count(n->store);
	}
	if (rq.op >= CTL_SWITCHOVER && rq.op <= CTL_CUT) {
		const char *msg;

		rs.code = control(n, rq.op, key, rq.klen);
		msg = rs.code ? tdm_errmsg() : "";
		rs.vlen = (uint32_t)strlen(msg);
		val = (uint8_t *)strdup(msg);
		if (!val)
			rs.vlen = 0;
	} else if (rq.op == CTL_CONFLICTS && rq.klen == 4) {
		uint32_t cap;
		int k = 0;

		memcpy(&cap, key, 4);
		cap = cap < 4096 ? cap : 4096;
		val = malloc(cap * sizeof(struct tdm_store_conflict_rec) + 1);
		if (val && n->store)
			k = tdm_store_conflicts_recent(n->store, (void *)val, (int)cap);
		rs.code = !val ? -ENOMEM : k < 0 ? k : 0;
		rs.vlen = rs.code ? 0 : (uint32_t)k * sizeof(struct tdm_store_conflict_rec);
	} else if (!n->store && rq.op == CTL_GET) {
		rs.code = -ENOTSUP; /* a witness keeps no data */
	} else if (rq.op == CTL_GET) {
		struct ctl_out o = { 0 };

		rs.code = out_get(n, &o, key, rq.klen, &rs.vlen);
		val = o.p;
	} else if (rq.op != CTL_DIGEST) {
		rs.code = -EINVAL;
	}
	if (write_full(fd, &rs, sizeof(rs)) && rs.vlen)
		write_full(fd, val, rs.vlen);
	free(val);
}

int eng_ctl_poll(struct tdm_node *n)
{
	struct timeval tv = { 0, 200000 };
	int fd, served = 0;

	while (n->ctl_fd >= 0 && (fd = accept4(n->ctl_fd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		serve(n, fd);
		close(fd);
		served++;
	}
	return served;
}

/* ---- Client side (tandemctl, attached handles) ---- */

static int ctl_call(const char *data_dir, uint32_t op, const void *key, uint32_t klen,
		    struct ctl_resp *rs, void *buf, uint32_t cap)
{
	struct ctl_req rq = { op, klen };
	struct sockaddr_un sa;
	struct timeval tv = { 5, 0 };
	int rc = ctl_addr(data_dir, &sa), fd;

	if (rc)
		return rc;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		rc = -errno;
		close(fd);
		return TDM_ERR(rc == -ENOENT ? -ECONNREFUSED : rc, "no node answers on %s (%s): is "
			       "tandemd running with data_dir %s?", sa.sun_path, strerror(-rc),
			       data_dir);
	}
	rc = write_full(fd, &rq, sizeof(rq)) && write_full(fd, key, klen) &&
	     read_full(fd, rs, sizeof(*rs)) ? 0 : -EIO;
	if (!rc && rs->vlen) {
		uint32_t take = rs->vlen < cap ? rs->vlen : cap;
		uint8_t sink[4096];

		rc = read_full(fd, buf, take) ? 0 : -EIO;
		for (uint32_t left = rs->vlen - take; !rc && left;) {
			uint32_t k = left < sizeof(sink) ? left : sizeof(sink);
			rc = read_full(fd, sink, k) ? 0 : -EIO;
			left -= k;
		}
	}
	close(fd);
	if (rc)
		return TDM_ERR(rc, "the node on %s did not answer (timed out or closed)",
			       sa.sun_path);
	return 0;
}

TDM_API int tdm_ctl_get(const char *data_dir, const void *key, uint32_t klen, void *buf,
			uint32_t cap, uint32_t *vlen)
{
	struct ctl_resp rs;
	int rc = ctl_call(data_dir, CTL_GET, key, klen, &rs, buf, cap);

	if (rc)
		return rc;
	*vlen = rs.vlen;
	return rs.code;
}

/* A control request whose failure message comes back as the value. */
static int ctl_command(const char *data_dir, uint32_t op, const void *arg, uint32_t len)
{
	struct ctl_resp rs;
	char msg[512];
	int rc = ctl_call(data_dir, op, arg, len, &rs, msg, sizeof(msg) - 1);

	if (rc)
		return rc;
	msg[rs.vlen < sizeof(msg) - 1 ? rs.vlen : sizeof(msg) - 1] = 0;
	if (rs.code)
		return TDM_ERR(rs.code, "%s", msg[0] ? msg : tdm_strerror(rs.code));
	return 0;
}

TDM_API int tdm_ctl_get_many(const char *data_dir, const void *keys, uint32_t len, void *out,
			     uint32_t cap, uint32_t *out_len)
{
	struct ctl_resp rs;
	int rc;

	if (len > CTL_MANY_MAX)
		return TDM_ERR(-E2BIG, "get many: %u bytes of keys, at most %u", len, CTL_MANY_MAX);
	rc = ctl_call(data_dir, CTL_GET_MANY, keys, len, &rs, out, cap);
	if (rc)
		return rc;
	*out_len = rs.vlen;
	if (!rs.code && rs.vlen > cap)
		return TDM_ERR(-ENOBUFS, "get many: the answer has %u bytes, the buffer %u",
			       rs.vlen, cap);
	return rs.code;
}

TDM_API int tdm_ctl_switchover(const char *data_dir, uint16_t to)
{
	return ctl_command(data_dir, CTL_SWITCHOVER, &to, sizeof(to));
}

TDM_API int tdm_ctl_promote(const char *data_dir, bool force)
{
	uint8_t f = force;

	return ctl_command(data_dir, CTL_PROMOTE, &f, 1);
}

TDM_API int tdm_ctl_cut(const char *data_dir, uint16_t peer, bool cut)
{
	uint8_t arg[3];

	memcpy(arg, &peer, 2);
	arg[2] = cut;
	return ctl_command(data_dir, CTL_CUT, arg, 3);
}

TDM_API int tdm_ctl_conflicts(const char *data_dir, struct tdm_store_conflict_rec *out, int cap,
			      int *n)
{
	uint32_t want = cap > 0 ? (uint32_t)cap : 0;
	struct ctl_resp rs;
	int rc = ctl_call(data_dir, CTL_CONFLICTS, &want, sizeof(want), &rs, out,
			  want * sizeof(*out));

	*n = 0;
	if (rc)
		return rc;
	if (!rs.code)
		*n = (int)(rs.vlen / sizeof(*out));
	return rs.code;
}

TDM_API int tdm_ctl_digest(const char *data_dir, uint64_t *digest, uint64_t *applied,
			   uint64_t *keys)
{
	struct ctl_resp rs;
	int rc = ctl_call(data_dir, CTL_DIGEST, NULL, 0, &rs, NULL, 0);

	if (rc)
		return rc;
	*digest = rs.digest;
	*applied = rs.applied;
	*keys = rs.keys;
	return rs.code;
}
