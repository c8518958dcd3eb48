/*
 * clipdex dupes, check and retrieve (docs/DUPES.md), on libclipdex's
 * cdx_dupes(), cdx_check() and cdx_retrieve().
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"

/* Options of dupes, check and retrieve. */
struct copts {
	struct gopts g;
	int help, json, csv;
	const char *kind;
	float threshold;
	long k, limit;
	int has_min;
	float min_score, dedupe, neg_weight;
	int repeat;             /* retrieve --allow-repeats */
	const char *prefix, *prompts, *out, *copy_to, *link_to;
	struct strlist negatives, examples, words;
};

/* Parses argv[2..] for dupes/check/retrieve; returns 0 or an exit code. */
static int
parse_curate(int argc, char **argv, struct copts *o)
{
	static const char *const with_value[] = { "--threshold", "--kind",
		"--prefix", "--limit", "-k", "--k", "--min-score", "--negative",
		"--dedupe", "--example", "--prompts", "--out", "--copy-to",
		"--link-to", "--negative-weight", NULL };
	int only_positional = 0;
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i], *v = NULL;
		char name[32];
		if (only_positional || strcmp(a, "-") == 0) {
			if (cli_strlist_push(&o->words, argv[i]) != 0)
				return EXIT_INPUT;
			continue;
		}
		if (strcmp(a, "--") == 0) {
			only_positional = 1;
			continue;
		}
		int r = cli_global_opt(argc, argv, &i, &o->g);
		if (r < 0)
			return EXIT_USAGE;
		if (r > 0)
			continue;
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			o->help = 1;
			continue;
		}
		if (strcmp(a, "--json") == 0) {
			o->json = 1;
			continue;
		}
		if (strcmp(a, "--csv") == 0) {
			o->csv = 1;
			continue;
		}
		if (strcmp(a, "--allow-repeats") == 0) {
			o->repeat = 1;
			continue;
		}
		if (a[0] != '-') {
			if (cli_strlist_push(&o->words, argv[i]) != 0)
				return EXIT_INPUT;
			continue;
		}
		/* --name=value or --name value */
		const char *eq = strncmp(a, "--", 2) == 0 ? strchr(a, '=') : NULL;
		if (eq != NULL && (size_t)(eq - a) < sizeof(name)) {
			snprintf(name, sizeof(name), "%.*s", (int)(eq - a), a);
			a = name;
		}
		int known = 0;
		for (int k = 0; with_value[k] != NULL; k++)
			known |= strcmp(a, with_value[k]) == 0;
		if (!known) {
			fprintf(stderr, "%s: unknown option '%s'\n", cli_prog, a);
			return EXIT_USAGE;
		}
		if (eq != NULL) {
			v = eq + 1;
		} else if (i + 1 >= argc) {
			fprintf(stderr, "%s: %s needs a value\n", cli_prog, a);
			return EXIT_USAGE;
		} else {
			v = argv[++i];
		}
		if (strcmp(a, "--threshold") == 0) {
			if (cli_parse_float(a, v, 1e-6, 1, &o->threshold) != 0)
				return EXIT_USAGE;
		} else if (strcmp(a, "--kind") == 0) {
			if (strcmp(v, "exact") != 0 && strcmp(v, "near") != 0 &&
			    strcmp(v, "similar") != 0 && strcmp(v, "clips") != 0) {
				fprintf(stderr, "%s: --kind wants exact, near, similar "
				    "or clips\n", cli_prog);
				return EXIT_USAGE;
			}
			o->kind = v;
		} else if (strcmp(a, "--prefix") == 0) {
			o->prefix = v;
		} else if (strcmp(a, "--limit") == 0) {
			if (cli_parse_int(a, v, 1, 1000, &o->limit) != 0)
				return EXIT_USAGE;
		} else if (strcmp(a, "-k") == 0 || strcmp(a, "--k") == 0) {
			if (cli_parse_int(a, v, 1, 100000, &o->k) != 0)
				return EXIT_USAGE;
		} else if (strcmp(a, "--min-score") == 0) {
			if (cli_parse_float(a, v, -1, 1, &o->min_score) != 0)
				return EXIT_USAGE;
			o->has_min = 1;
		} else if (strcmp(a, "--dedupe") == 0) {
			if (cli_parse_float(a, v, 1e-6, 1, &o->dedupe) != 0)
				return EXIT_USAGE;
		} else if (strcmp(a, "--negative-weight") == 0) {
			if (cli_parse_float(a, v, 0, 10, &o->neg_weight) != 0)
				return EXIT_USAGE;
		} else if (strcmp(a, "--negative") == 0) {
			if (cli_strlist_push(&o->negatives, (char *)v) != 0)
				return EXIT_INPUT;
		} else if (strcmp(a, "--example") == 0) {
			if (cli_strlist_push(&o->examples, (char *)v) != 0)
				return EXIT_INPUT;
		} else if (strcmp(a, "--prompts") == 0) {
			o->prompts = v;
		} else if (strcmp(a, "--out") == 0) {
			o->out = v;
		} else if (strcmp(a, "--copy-to") == 0) {
			o->copy_to = v;
		} else if (strcmp(a, "--link-to") == 0) {
			o->link_to = v;
		}
	}
	return 0;
}

static void
free_copts(struct copts *o)
{
	free(o->negatives.v);
	free(o->examples.v);
	free(o->words.v);
}

/* Prints s as one CSV field (quoted when needed). */
static void
print_csv_field(const char *s)
{
	if (strpbrk(s, ",\"\n\r") == NULL) {
		fputs(s, stdout);
		return;
	}
	putchar('"');
	for (; *s; s++) {
		if (*s == '"')
			putchar('"');
		putchar(*s);
	}
	putchar('"');
}

/* Are the regular files a and b the same bytes? 1 yes, 0 no or unreadable. */
static int
same_file_bytes(const char *a, const char *b)
{
	struct stat sa, sb;
	char ba[65536], bb[65536];
	int fa = -1, fb = -1, same = 0;
	ssize_t ra, rb;

	if (stat(a, &sa) != 0 || stat(b, &sb) != 0 || !S_ISREG(sa.st_mode) ||
	    !S_ISREG(sb.st_mode) || sa.st_size != sb.st_size)
		return 0;
	if ((fa = open(a, O_RDONLY)) < 0 || (fb = open(b, O_RDONLY)) < 0)
		goto out_close;
	for (;;) {
		ra = read(fa, ba, sizeof(ba));
		if (ra < 0)
			break;
		size_t got = 0;
		while (got < (size_t)ra && (rb = read(fb, bb + got,
		    (size_t)ra - got)) > 0)
			got += (size_t)rb;
		if (got != (size_t)ra || memcmp(ba, bb, got) != 0)
			break;
		if (ra == 0) {
			same = 1;
			break;
		}
	}
out_close:
	if (fa >= 0)
		close(fa);
	if (fb >= 0)
		close(fb);
	return same;
}

/* Is the link at path a symbolic link to src? */
static int
links_to(const char *path, const char *src)
{
	char buf[4096];
	ssize_t n = readlink(path, buf, sizeof(buf) - 1);
	if (n < 0)
		return 0;
	buf[n] = '\0';
	return strcmp(buf, src) == 0;
}

/* Copies (or symlinks) src into dir under its own name, or name-1.ext,
 * name-2.ext, ... when taken: nothing is overwritten, and a name that
 * already holds the same bytes (a link to src, with link) is reused, so a
 * rerun into the same dir adds no copies.  The name used is written to
 * out.  Returns 0 (copied or linked), 1 (already there) or -1 (errno
 * set). */
static int
materialise(const char *src, const char *dir, int link, char *out,
    size_t outlen)
{
	const char *base = strrchr(src, '/');
	base = base ? base + 1 : src;
	const char *dot = strrchr(base, '.');
	int stem = dot && dot != base ? (int)(dot - base) : (int)strlen(base);
	const char *ext = dot && dot != base ? dot : "";

	for (int n = 0; n < 100000; n++) {
		if (n == 0)
			snprintf(out, outlen, "%s/%s", dir, base);
		else
			snprintf(out, outlen, "%s/%.*s-%d%s", dir, stem, base, n, ext);
		if (link) {
			if (symlink(src, out) == 0)
				return 0;
			if (errno != EEXIST)
				return -1;
			if (links_to(out, src))
				return 1;
			continue;
		}
		int fd = open(out, O_WRONLY | O_CREAT | O_EXCL, 0644);
		if (fd < 0 && errno == EEXIST) {
			if (same_file_bytes(src, out))
				return 1;
			continue;
		}
		if (fd < 0)
			return -1;
		int in = open(src, O_RDONLY);
		char buf[65536];
		ssize_t r = in < 0 ? -1 : 0;
		while (in >= 0 && (r = read(in, buf, sizeof(buf))) > 0)
			if (write(fd, buf, (size_t)r) != r) {
				r = -1;
				break;
			}
		int e = errno;
		if (in >= 0)
			close(in);
		if (close(fd) != 0 && r == 0)
			r = -1, e = errno;
		if (r < 0) {
			unlink(out);
			errno = e;
			return -1;
		}
		return 0;
	}
	errno = EEXIST;
	return -1;
}

static const char *const kind_names[] = { "near", "exact", "similar" };

static const char *
kind_name(int kind)
{
	return kind >= 0 && kind <= 2 ? kind_names[kind] : "";
}

/* A result as the protocol's JSON object; keep < 0: no "keep" field. */
static cJSON *
result_json(const cdx_result *r, int keep)
{
	cJSON *o = cJSON_CreateObject();
	if (o == NULL)
		return NULL;
	cJSON_AddNumberToObject(o, "id", (double)r->id);
	cJSON_AddStringToObject(o, "path", r->path);
	cJSON_AddNumberToObject(o, "score", (double)r->score);
	if (keep >= 0)
		cJSON_AddBoolToObject(o, "keep", keep);
	cJSON_AddNumberToObject(o, "width", r->width);
	cJSON_AddNumberToObject(o, "height", r->height);
	cJSON_AddNumberToObject(o, "size", (double)r->size);
	cJSON_AddNumberToObject(o, "mtime", (double)r->mtime);
	if (r->capture_time == INT64_MIN)
		cJSON_AddNullToObject(o, "capture_time");
	else
		cJSON_AddNumberToObject(o, "capture_time", (double)r->capture_time);
	cJSON_AddNumberToObject(o, "added", (double)r->added);
	return o;
}

/* Prints o as one JSON line to f and deletes it. */
static void
print_json_line(cJSON *o, FILE *f)
{
	char *s = o ? cJSON_PrintUnformatted(o) : NULL;
	if (s != NULL)
		fprintf(f, "%s\n", s);
	free(s);
	cJSON_Delete(o);
}

static void
print_group_json(const cdx_dupes_group *g)
{
	cJSON *o = cJSON_CreateObject(), *mem;
	if (o == NULL)
		return;
	cJSON_AddStringToObject(o, "kind", kind_name(g->kind));
	cJSON_AddNumberToObject(o, "size", (double)g->n);
	cJSON_AddNumberToObject(o, "keep", (double)g->keep);
	cJSON_AddStringToObject(o, "reason", g->reason);
	if ((mem = cJSON_AddArrayToObject(o, "members")) != NULL)
		for (size_t i = 0; i < g->n; i++)
			cJSON_AddItemToArray(mem, result_json(&g->members[i],
			    g->members[i].id == g->keep));
	print_json_line(o, stdout);
}

static void
print_group_text(const cdx_dupes_group *g, long group)
{
	printf("group %ld: %s, %zu images, keep %s (%s)\n", group,
	    kind_name(g->kind), g->n, g->n ? g->members[0].path : "",
	    g->reason);
	for (size_t i = 0; i < g->n; i++) {
		const cdx_result *m = &g->members[i];
		printf("  %s %.4f %5ux%-5u %10lld  %s\n", m->id == g->keep ?
		    "keep" : "dup ", (double)m->score, m->width, m->height,
		    (long long)m->size, m->path);
	}
}

static void
print_group_csv(const cdx_dupes_group *g, long group)
{
	for (size_t i = 0; i < g->n; i++) {
		const cdx_result *m = &g->members[i];
		int keep = m->id == g->keep;
		printf("%ld,%s,%d,%llu,", group, kind_name(g->kind), keep,
		    (unsigned long long)m->id);
		print_csv_field(m->path);
		printf(",%.6f,%u,%u,%lld,", (double)m->score, m->width, m->height,
		    (long long)m->size);
		if (m->capture_time != INT64_MIN)
			printf("%lld", (long long)m->capture_time);
		putchar(',');
		print_csv_field(keep ? g->reason : "");
		putchar('\n');
	}
}

/* "PATH@HH:MM:SS" of one side of a clip pair. */
static void
print_side(const cJSON *s)
{
	const cJSON *p = cJSON_GetObjectItemCaseSensitive(s, "path");
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(s, "time");
	long long sec = cJSON_IsNumber(t) ? (long long)t->valuedouble : 0;
	printf("%s@%02lld:%02lld:%02lld", cJSON_IsString(p) ? p->valuestring : "",
	    sec / 3600, sec / 60 % 60, sec % 60);
}

/* dupes --kind clips: video clips compared by their frames (the dupes
 * operation's kind "clips", docs/VIDEO.md), one pair per line. */
static int
dupes_clips(cdx_client *c, const struct copts *o, const char *prefix)
{
	cJSON *req = cJSON_CreateObject();
	char *body = NULL, *reply = NULL;
	int status = 0, rc;
	long offset = 0;

	if (req == NULL)
		return EXIT_INPUT;
	cJSON_AddStringToObject(req, "op", "dupes");
	cJSON_AddStringToObject(req, "kind", "clips");
	if (o->threshold > 0)
		cJSON_AddNumberToObject(req, "threshold", o->threshold);
	if (prefix != NULL)
		cJSON_AddStringToObject(req, "path_prefix", prefix);
	cJSON_AddNumberToObject(req, "limit", (double)o->limit);
	cJSON *off = cJSON_AddNumberToObject(req, "offset", 0);
	for (;;) {
		cJSON_SetNumberValue(off, (double)offset);
		free(body);
		body = cJSON_PrintUnformatted(req);
		free(reply);
		reply = NULL;
		if (body == NULL)
			break;
		if ((rc = cdx_call(c, body, &reply)) != 0) {
			status = cli_call_failed(c, "dupes", rc);
			break;
		}
		cJSON *r = cJSON_Parse(reply), *q;
		cJSON_ArrayForEach(q, cJSON_GetObjectItemCaseSensitive(r, "pairs")) {
			if (o->json) {
				char *line = cJSON_PrintUnformatted(q);
				if (line != NULL)
					puts(line);
				free(line);
				continue;
			}
			const cJSON *rel = cJSON_GetObjectItemCaseSensitive(q,
			    "relation");
			const cJSON *m = cJSON_GetObjectItemCaseSensitive(q, "matched");
			const cJSON *a = cJSON_GetObjectItemCaseSensitive(q, "a");
			const cJSON *b = cJSON_GetObjectItemCaseSensitive(q, "b");
			const cJSON *fa = cJSON_GetObjectItemCaseSensitive(a, "frames");
			const cJSON *fb = cJSON_GetObjectItemCaseSensitive(b, "frames");
			printf("%-6s %d/%d frames  ", cJSON_IsString(rel) ?
			    rel->valuestring : "", cJSON_IsNumber(m) ? m->valueint : 0,
			    cJSON_IsNumber(fa) && cJSON_IsNumber(fb) ?
			    (fa->valueint > fb->valueint ? fa->valueint : fb->valueint) :
			    0);
			print_side(a);
			fputs("  ", stdout);
			print_side(b);
			putchar('\n');
		}
		const cJSON *next = cJSON_GetObjectItemCaseSensitive(r,
		    "next_offset");
		const cJSON *tp = cJSON_GetObjectItemCaseSensitive(r, "total_pairs");
		const cJSON *tc = cJSON_GetObjectItemCaseSensitive(r, "total_clips");
		int more = cJSON_IsNumber(next);
		if (!more && !o->json)
			fprintf(stderr, "%s: %lld clip pairs among %lld clips\n",
			    cli_prog, cJSON_IsNumber(tp) ? (long long)tp->valuedouble :
			    0, cJSON_IsNumber(tc) ? (long long)tc->valuedouble : 0);
		offset = more ? (long)next->valuedouble : 0;
		cJSON_Delete(r);
		if (!more)
			break;
	}
	free(body);
	free(reply);
	cJSON_Delete(req);
	return status != 0 ? status : cli_finish_output();
}

int
cmd_dupes(int argc, char **argv)
{
	struct copts o = { .g = { NULL, NULL, 600000, CLI_CONNECT_TIMEOUT_MS },
		.limit = 100 };
	cdx_client *c = NULL;
	char *prefix = NULL;
	long group = 0;
	int status, rc;

	if ((status = parse_curate(argc, argv, &o)) != 0 || o.help) {
		if (o.help)
			cli_command_usage(stdout, "dupes");
		goto out;
	}
	if (o.words.n > 0 || o.k || o.prompts || o.out || o.copy_to ||
	    o.link_to || o.negatives.n || o.examples.n || (o.json && o.csv)) {
		fprintf(stderr, "%s: dupes takes --kind, --threshold, --prefix, "
		    "--limit and one of --json, --csv\n", cli_prog);
		status = EXIT_USAGE;
		goto out;
	}
	cdx_dupes_opts d = { .kind = CDX_DUPES_NEAR, .threshold = o.threshold,
		.limit = (int)o.limit };
	for (int k = 0; o.kind != NULL && k < 3; k++)
		if (strcmp(o.kind, kind_names[k]) == 0)
			d.kind = k;
	if (o.prefix != NULL) {
		prefix = cli_absolute_path(o.prefix);
		d.path_prefix = prefix ? prefix : o.prefix;
	}
	if ((status = cli_open_client(&o.g, &c)) != 0)
		goto out;
	if (o.kind != NULL && strcmp(o.kind, "clips") == 0) {
		if (o.csv) {
			fprintf(stderr, "%s: --kind clips prints text or --json\n",
			    cli_prog);
			status = EXIT_USAGE;
		} else {
			status = dupes_clips(c, &o, d.path_prefix);
		}
		goto out;
	}
	if (o.csv)
		puts("group,kind,keep,id,path,score,width,height,size,"
		    "capture_time,reason");
	do {
		cdx_dupes_page *p = NULL;
		if ((rc = cdx_dupes(c, &d, &p)) != 0) {
			status = cli_call_failed(c, "dupes", rc);
			goto out;
		}
		for (size_t i = 0; i < p->n; i++) {
			group++;
			if (o.json)
				print_group_json(&p->groups[i]);
			else if (o.csv)
				print_group_csv(&p->groups[i], group);
			else
				print_group_text(&p->groups[i], group);
		}
		if (!o.json && !o.csv && p->next_offset < 0)
			fprintf(stderr, "%s: %lld %s groups (%lld images) among the "
			    "collection, threshold %g\n", cli_prog,
			    (long long)p->total_groups, kind_name(p->kind),
			    (long long)p->total_images, p->threshold);
		d.offset = p->next_offset;
		cdx_dupes_page_free(p);
	} while (d.offset >= 0);
	status = cli_finish_output();
out:
	cdx_client_close(c);
	free(prefix);
	free_copts(&o);
	return status;
}

int
cmd_check(int argc, char **argv)
{
	struct copts o = { .g = { NULL, NULL, 30000, CLI_CONNECT_TIMEOUT_MS } };
	cdx_client *c = NULL;
	cdx_check_result *r = NULL;
	int status, rc;

	if ((status = parse_curate(argc, argv, &o)) != 0 || o.help) {
		if (o.help)
			cli_command_usage(stdout, "check");
		goto out;
	}
	if (o.words.n != 1) {
		fprintf(stderr, "%s: check takes one FILE\n", cli_prog);
		status = EXIT_USAGE;
		goto out;
	}
	cdx_term image = { .kind = CDX_TERM_FILE, .text = o.words.v[0] };
	cdx_check_opts co = { .threshold = o.threshold,
		.k = (int)(o.k > 1000 ? 1000 : o.k) };
	if ((status = cli_open_client(&o.g, &c)) != 0)
		goto out;
	if ((rc = cdx_check(c, &image, &co, &r)) != 0) {
		status = cli_call_failed(c, "check", rc);
		goto out;
	}
	if (o.json) {
		cJSON *j = cJSON_CreateObject(), *ex, *nr;
		if (j != NULL && (ex = cJSON_AddArrayToObject(j, "exact")) != NULL &&
		    (nr = cJSON_AddArrayToObject(j, "near")) != NULL) {
			for (size_t i = 0; i < r->n_exact; i++)
				cJSON_AddItemToArray(ex, result_json(&r->exact[i], -1));
			for (size_t i = 0; i < r->n_near; i++)
				cJSON_AddItemToArray(nr, result_json(&r->near[i], -1));
			cJSON_AddBoolToObject(j, "duplicate", r->duplicate);
		}
		print_json_line(j, stdout);
	} else {
		for (size_t i = 0; i < r->n_exact; i++)
			printf("exact  1.0000  %s\n", r->exact[i].path);
		for (size_t i = 0; i < r->n_near; i++)
			printf("near   %.4f  %s\n", (double)r->near[i].score,
			    r->near[i].path);
		fprintf(stderr, "%s: %s: %s\n", cli_prog, o.words.v[0],
		    r->n_exact > 0 ? "already in the collection" : r->duplicate ?
		    "a near duplicate is in the collection" :
		    "not in the collection");
	}
	/* The answer is the exit code (docs/CLI.md), once the output is out. */
	if ((status = cli_finish_output()) == 0)
		status = r->n_exact > 0 ? EXIT_CHECK_EXACT : r->duplicate ?
		    EXIT_CHECK_NEAR : 0;
out:
	cdx_check_result_free(r);
	cdx_client_close(c);
	free_copts(&o);
	return status;
}

int
cmd_retrieve(int argc, char **argv)
{
	struct copts o = { .g = { NULL, NULL, 600000, CLI_CONNECT_TIMEOUT_MS } };
	struct strlist lines = { 0 }, labels = { 0 };
	cdx_client *c = NULL;
	cdx_term *terms = NULL, *negs = NULL;
	cdx_prompt *prompts = NULL;
	FILE *out = NULL;
	long n_written = 0, n_failed = 0, n_there = 0;
	int status, rc;

	if ((status = parse_curate(argc, argv, &o)) != 0 || o.help) {
		if (o.help)
			cli_command_usage(stdout, "retrieve");
		goto out;
	}
	if ((o.prompts == NULL && o.examples.n == 0) || o.out == NULL ||
	    (o.copy_to && o.link_to) || o.words.n > 0) {
		fprintf(stderr, "%s: retrieve needs --prompts FILE (or --example "
		    "FILE) and --out FILE, and at most one of --copy-to, "
		    "--link-to\n", cli_prog);
		status = EXIT_USAGE;
		goto out;
	}
	if (o.prompts != NULL && cli_read_lines(o.prompts, &lines) != 0) {
		status = EXIT_INPUT;
		goto out;
	}
	terms = calloc(lines.n + o.examples.n + 1, sizeof(*terms));
	prompts = calloc(lines.n + o.examples.n + 1, sizeof(*prompts));
	negs = calloc(o.negatives.n + 1, sizeof(*negs));
	if (terms == NULL || prompts == NULL || negs == NULL) {
		fprintf(stderr, "%s: out of memory\n", cli_prog);
		status = EXIT_INPUT;
		goto out;
	}
	/* Prompt lines: text, @FILE for an example image (uploaded by
	 * libclipdex) or learned:NAME for a learned classifier; blank lines
	 * and lines starting with '#' are skipped. */
	for (size_t i = 0; i < lines.n + o.examples.n; i++) {
		int ex = i >= lines.n;
		char *l = ex ? o.examples.v[i - lines.n] : lines.v[i];
		if (!ex && (l[0] == '\0' || l[0] == '#'))
			continue;
		cdx_term *t = &terms[labels.n];
		t->kind = ex || l[0] == '@' ? CDX_TERM_FILE : CDX_TERM_TEXT;
		t->text = !ex && l[0] == '@' ? l + 1 : l;
		if (!ex && strncmp(l, "learned:", 8) == 0 && l[8] != '\0') {
			t->kind = CDX_TERM_LEARNED;     /* a classifier (learn) */
			t->text = l + 8;
		}
		prompts[labels.n].terms = t;
		prompts[labels.n].n_terms = 1;
		if (cli_strlist_push(&labels, l) != 0) {
			status = EXIT_INPUT;
			goto out;
		}
	}
	if (labels.n == 0) {
		fprintf(stderr, "%s: %s has no prompts\n", cli_prog, o.prompts);
		status = EXIT_USAGE;
		goto out;
	}
	for (size_t i = 0; i < o.negatives.n; i++) {
		negs[i].kind = CDX_TERM_TEXT;
		negs[i].text = o.negatives.v[i];
	}
	cdx_retrieve_req q = { .prompts = prompts, .n_prompts = labels.n,
		.negatives = negs, .n_negatives = o.negatives.n,
		.has_negative_weight = o.neg_weight > 0,
		.negative_weight = o.neg_weight, .k = (int)(o.k ? o.k : 10),
		.has_min_score = o.has_min, .min_score = o.min_score,
		.dedupe = o.dedupe, .allow_repeats = o.repeat, .limit = 500 };
	const char *dir = o.copy_to ? o.copy_to : o.link_to;
	if (dir != NULL && mkdir(dir, 0755) != 0 && errno != EEXIST) {
		fprintf(stderr, "%s: %s: %s\n", cli_prog, dir, strerror(errno));
		status = EXIT_INPUT;
		goto out;
	}
	if ((out = strcmp(o.out, "-") == 0 ? stdout : fopen(o.out, "w")) == NULL) {
		fprintf(stderr, "%s: %s: %s\n", cli_prog, o.out, strerror(errno));
		status = EXIT_INPUT;
		goto out;
	}
	if ((status = cli_open_client(&o.g, &c)) != 0)
		goto out;
	/* One page at a time: memory stays bounded whatever k is. */
	do {
		cdx_retrieve_page *p = NULL;
		if ((rc = cdx_retrieve(c, &q, &p)) != 0) {
			status = cli_call_failed(c, "retrieve", rc);
			goto out;
		}
		for (size_t i = 0; i < p->n; i++) {
			const cdx_retrieve_hit *h = &p->hits[i];
			cJSON *line = cJSON_CreateObject();
			cJSON_AddStringToObject(line, "prompt", h->prompt < labels.n ?
			    labels.v[h->prompt] : "");
			cJSON_AddNumberToObject(line, "prompt_index", (double)h->prompt);
			cJSON_AddNumberToObject(line, "rank", (double)h->rank);
			cJSON_AddNumberToObject(line, "id", (double)h->result.id);
			cJSON_AddStringToObject(line, "path", h->result.path);
			cJSON_AddNumberToObject(line, "score", (double)h->result.score);
			cJSON_AddNumberToObject(line, "width", h->result.width);
			cJSON_AddNumberToObject(line, "height", h->result.height);
			if (dir != NULL) {
				char dst[4096];
				int m = materialise(h->result.path, dir,
				    o.link_to != NULL, dst, sizeof(dst));
				if (m >= 0) {
					cJSON_AddStringToObject(line, "file", dst);
					n_there += m;
				} else {
					fprintf(stderr, "%s: %s: %s\n", cli_prog,
					    h->result.path, strerror(errno));
					n_failed++;
				}
			}
			print_json_line(line, out);
			n_written++;
		}
		q.offset = p->next_offset;
		cdx_retrieve_page_free(p);
	} while (q.offset >= 0);
	if (out != stdout && fclose(out) != 0) {
		out = NULL;
		fprintf(stderr, "%s: %s: write error\n", cli_prog, o.out);
		status = EXIT_INPUT;
		goto out;
	}
	if (out == stdout && (status = cli_finish_output()) != 0) {
		out = NULL;
		goto out;
	}
	out = NULL;
	fprintf(stderr, "%s: %ld results for %zu prompts written to %s\n",
	    cli_prog, n_written, labels.n, o.out);
	if (n_there > 0)
		fprintf(stderr, "%s: %ld files were already in %s\n", cli_prog,
		    n_there, dir);
	status = n_failed > 0 ? EXIT_INPUT : 0;
out:
	if (out != NULL && out != stdout)
		fclose(out);
	free(terms);
	free(prompts);
	free(negs);
	for (size_t i = 0; i < lines.n; i++)
		free(lines.v[i]);
	free(lines.v);
	free(labels.v);
	cdx_client_close(c);
	free_copts(&o);
	return status;
}
