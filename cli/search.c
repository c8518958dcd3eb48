/*
 * clipdex search and similar: the query syntax and options into a
 * cdx_query, the results printed as text, JSON lines or paths.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

static void
print_time_field(const char *key, int64_t t)
{
	if (t == INT64_MIN)
		printf(",\"%s\":null", key);
	else
		printf(",\"%s\":%lld", key, (long long)t);
}

static void
print_results(const cdx_results *r, const struct sopts *o)
{
	if (o->paths) {
		for (size_t i = 0; i < r->n; i++)
			printf("%s\n", r->results[i].path);
		return;
	}
	if (o->json) {
		for (size_t i = 0; i < r->n; i++) {
			const cdx_result *x = &r->results[i];
			printf("{\"rank\":%zu,\"id\":%llu,\"path\":",
			    (size_t)o->q.offset + i + 1, (unsigned long long)x->id);
			cli_print_json_string(x->path);
			printf(",\"score\":%.6f", (double)x->score);
			if (!isnan(x->prob))
				printf(",\"prob\":%.6f", x->prob);
			printf(",\"width\":%u,\"height\":%u,\"size\":%lld",
			    (unsigned)x->width, (unsigned)x->height,
			    (long long)x->size);
			print_time_field("mtime", x->mtime);
			print_time_field("capture_time", x->capture_time);
			print_time_field("added", x->added);
			if (x->time >= 0)
				printf(",\"kind\":\"frame\",\"time\":%.3f", x->time);
			if (x->shard != NULL) {
				fputs(",\"shard\":", stdout);
				cli_print_json_string(x->shard);
			}
			fputs(",\"tags\":[", stdout);
			for (size_t t = 0; t < x->n_tags; t++) {
				printf("%s{\"set\":", t ? "," : "");
				cli_print_json_string(x->tags[t].set);
				fputs(",\"label\":", stdout);
				cli_print_json_string(x->tags[t].label);
				printf(",\"prob\":%.6g}", x->tags[t].prob);
			}
			fputs("]}\n", stdout);
		}
		return;
	}
	if (r->n == 0) {
		fprintf(stderr, "%s: no results\n", cli_prog);
		return;
	}
	int rank_w = 1, size_w = 1;
	for (size_t i = 0; i < r->n; i++) {
		char buf[64];
		int n = snprintf(buf, sizeof(buf), "%zu", (size_t)o->q.offset + i + 1);
		if (n > rank_w)
			rank_w = n;
		n = snprintf(buf, sizeof(buf), "%ux%u", (unsigned)r->results[i].width,
		    (unsigned)r->results[i].height);
		if (n > size_w)
			size_w = n;
	}
	for (size_t i = 0; i < r->n; i++) {
		const cdx_result *x = &r->results[i];
		char size[64];
		snprintf(size, sizeof(size), "%ux%u", (unsigned)x->width,
		    (unsigned)x->height);
		char prob[16] = "";
		if (!isnan(x->prob))   /* the match probability, SigLIP */
			snprintf(prob, sizeof(prob), "  %5.1f%%", 100.0 * x->prob);
		printf("%*zu  %6.3f%s  %-*s  %s", rank_w,
		    (size_t)o->q.offset + i + 1, (double)x->score, prob, size_w,
		    size, x->path);
		/* a frame of a clip: "clip.mp4@00:01:42" */
		if (x->time >= 0) {
			long long s = (long long)x->time;
			printf("@%02lld:%02lld:%02lld", s / 3600, s / 60 % 60, s % 60);
		}
		/* its tags: "  [food 93%, beach 61%]" */
		for (size_t t = 0; t < x->n_tags; t++)
			printf("%s%s %.0f%%", t ? ", " : "  [", x->tags[t].label,
			    100.0 * x->tags[t].prob);
		fputs(x->n_tags ? "]\n" : "\n", stdout);
	}
}

/* Builds the terms of a search: the parsed query, then --not and --image. */
static int
build_terms(struct sopts *o, cdx_terms **parsed, cdx_term **terms, size_t *n)
{
	size_t len = 0;
	char *joined = NULL;

	*parsed = NULL;
	if (o->words.n > 0) {
		for (size_t i = 0; i < o->words.n; i++)
			len += strlen(o->words.v[i]) + 1;
		if ((joined = malloc(len)) == NULL)
			return EXIT_INPUT;
		joined[0] = '\0';
		for (size_t i = 0; i < o->words.n; i++) {
			if (i)
				strcat(joined, " ");
			strcat(joined, o->words.v[i]);
		}
		if (cdx_query_parse(joined, parsed) != 0) {
			fprintf(stderr, "%s: bad query: %s\n", cli_prog,
			    cdx_client_errmsg(NULL));
			free(joined);
			return EXIT_USAGE;
		}
		free(joined);
	}
	size_t base = *parsed ? (*parsed)->n : 0;
	*n = base + o->nots.n + o->images.n;
	if (*n == 0 && o->q.learned != NULL)
		return 0;       /* ranked by the classifier alone */
	if (*n == 0) {
		fprintf(stderr, "%s search: needs a QUERY, --image, --not or "
		    "--learned (see %s search --help)\n", cli_prog, cli_prog);
		return EXIT_USAGE;
	}
	/* --learned beside other terms is one more term */
	int learned = o->q.learned != NULL;
	if ((*terms = calloc(*n + (size_t)learned, sizeof(cdx_term))) == NULL)
		return EXIT_INPUT;
	if (learned) {
		(*terms)[(*n)++] = (cdx_term){ .kind = CDX_TERM_LEARNED,
			.text = o->q.learned, .weight = 1.0f };
		o->q.learned = NULL;
	}
	for (size_t i = 0; i < base; i++)
		(*terms)[i] = (*parsed)->terms[i];
	for (size_t i = 0; i < o->nots.n; i++)
		(*terms)[base + i] = (cdx_term){ .kind = CDX_TERM_TEXT,
			.text = o->nots.v[i], .weight = -1.0f };
	for (size_t i = 0; i < o->images.n; i++)
		(*terms)[base + o->nots.n + i] = (cdx_term){ .kind = CDX_TERM_FILE,
			.text = o->images.v[i], .weight = 1.0f };
	return 0;
}

int
cmd_query(int argc, char **argv, int cmd)
{
	struct sopts o = { .g = { NULL, NULL, 30000, CLI_CONNECT_TIMEOUT_MS } };
	const char *name = cmd == OPT_SEARCH ? "search" : "similar";
	cdx_terms *parsed = NULL;
	cdx_term *terms = NULL, one = { 0 };
	cdx_results *r = NULL;
	cdx_client *c = NULL;
	char *abs = NULL;
	int status, rc;

	if ((status = cli_parse_online(argc, argv, 2, cmd, &o)) != 0 || o.help) {
		if (o.help)
			cli_command_usage(stdout, name);
		goto out;
	}
	if (cmd == OPT_SEARCH) {
		size_t n;
		if ((status = build_terms(&o, &parsed, &terms, &n)) != 0)
			goto out;
		o.q.terms = terms;
		o.q.n_terms = n;
	} else if (o.words.n != 1) {
		fprintf(stderr, "%s similar: needs one FILE, id:N or @FILE (see %s "
		    "similar --help)\n", cli_prog, cli_prog);
		status = EXIT_USAGE;
		goto out;
	}
	if ((status = cli_open_client(&o.g, &c)) != 0)
		goto out;
	if (cmd == OPT_SEARCH) {
		rc = cdx_search(c, &o.q, &r);
	} else {
		const char *t = o.words.v[0];
		if (strncmp(t, "id:", 3) == 0 || t[0] == '@' ||
		    strncmp(t, "img:", 4) == 0) {
			if (cdx_query_parse(t, &parsed) != 0 || parsed->n != 1) {
				fprintf(stderr, "%s: %s\n", cli_prog, cdx_client_errmsg(NULL));
				status = EXIT_USAGE;
				goto out;
			}
			one = parsed->terms[0];
		}
		if (strncmp(t, "id:", 3) == 0) {
			rc = cdx_similar(c, one.id, &o.q, &r);
		} else if (t[0] == '@' || strncmp(t, "img:", 4) == 0) {
			o.q.terms = &one;
			o.q.n_terms = 1;
			rc = cdx_search(c, &o.q, &r);
		} else {
			if ((abs = cli_absolute_path(t)) == NULL) {
				fprintf(stderr, "%s: %s: %s\n", cli_prog, t, strerror(errno));
				status = EXIT_INPUT;
				goto out;
			}
			rc = cdx_similar_path(c, abs, &o.q, &r);
		}
	}
	if (rc != 0) {
		status = cli_call_failed(c, name, rc);
		goto out;
	}
	print_results(r, &o);
	if (r->partial)
		fprintf(stderr, "%s: a partial answer: shard%s %s of %zu did not "
		    "answer in time\n", cli_prog, strchr(r->missing ? r->missing :
		    "", ',') ? "s" : "", r->missing ? r->missing : "?", r->shards);
	if (r->no_capture_time > 0)
		fprintf(stderr, "%s: %lld image%s without a capture time (no EXIF "
		    "date) cannot match --after/--before; --time mtime filters by "
		    "the file's modification time\n", cli_prog,
		    (long long)r->no_capture_time, r->no_capture_time == 1 ? "" :
		    "s");
	status = cli_finish_output();
out:
	cdx_results_free(r);
	cdx_client_close(c);
	cdx_terms_free(parsed);
	free(terms);
	free(abs);
	cli_free_sopts(&o);
	return status;
}
