/*
 * clipdex: usage texts, option parsing and output helpers shared by the
 * commands (cli/cli.h).
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"

const char *const cli_prog = "clipdex";

void
cli_usage(FILE *f)
{
	fprintf(f,
	    "usage: clipdex <command> [options]    (clipdex <command> --help)\n"
	    "\n"
	    "Commands that ask the clipdexd daemon:\n"
	    "  search QUERY... [-k N] [--offset N] [--min-score S] [--prefix PATH]\n"
	    "         [--after T] [--before T] [--time capture|mtime]\n"
	    "         [--collapse S] [--exact] [--not TEXT] [--image FILE]\n"
	    "         [--learned NAME] [--tag TAG] [--not-tag TAG]\n"
	    "         [--json | --paths]\n"
	    "      QUERY: terms joined by ' + ' or ' - ', each [WEIGHT:]SOURCE with\n"
	    "      SOURCE text, @FILE, img:FILE, path:PATH, id:N or learned:NAME,\n"
	    "      e.g.\n"
	    "      \"beach - 0.7:people + 0.5:@example.jpg\"\n"
	    "  similar FILE|id:N|@FILE [search options]\n"
	    "  add PATH... [--wait]      index files or folders\n"
	    "  remove PATH...            forget files or folders\n"
	    "  status [--json]\n"
	    "  failures [--limit N] [--json]\n"
	    "  dupes [--kind exact|near|similar|clips] [--threshold T] [--prefix PATH]\n"
	    "        [--json | --csv]     duplicate groups with the copy to keep\n"
	    "  check FILE [--threshold T] [--json]   is FILE already indexed?\n"
	    "  classify --labels L (--id N | --path P | --image FILE)... [--json]\n"
	    "  tags define NAME --labels L [--threshold P] [--multi]\n"
	    "  tags list | show NAME | delete NAME | counts [NAME]\n"
	    "  retrieve --prompts FILE [--example IMG] [-k N] [--min-score S]\n"
	    "        [--negative TEXT] [--dedupe T] --out FILE.jsonl\n"
	    "        [--copy-to DIR | --link-to DIR]   dataset retrieval\n"
	    "  learn NAME --positive id:N,@FILE,PATH,... [--negative ...]\n"
	    "        [--threshold P]   a classifier from a few example images\n"
	    "  Options of all of them: --url URL, --timeout MS, --connect-timeout MS,\n"
	    "  --token T (defaults: $CLIPDEX_URL, 30000, 3000, $CLIPDEX_TOKEN).\n"
	    "\n"
	    "Cluster command (NATS; docs/SCALE.md):\n"
	    "  enqueue --nats URLS PATH... [--replicas N]   put the files under\n"
	    "        PATH on the work queue of the encoding workers\n"
	    "\n"
	    "Offline commands:\n"
	    "  embed --model DIR [--exact] [--threads N] [--precision P]\n"
	    "        --image PATH [...] | --text STRING [...] | --text-file FILE\n"
	    "      Print one JSON object per input per line, in input order, with\n"
	    "      \"embedding\" (L2-normalised floats). Images use the fast\n"
	    "      preprocessing (reduced-size JPEG decoding) unless --exact.\n"
	    "      --threads: default every available core; --precision: auto\n"
	    "      (default), fp32, bf16, int8 or int8-mixed; what runs goes to\n"
	    "      stderr.\n"
	    "  embed --model DIR --compare-precision P --image PATH [...]\n"
	    "        [--text STRING ...]\n"
	    "      What precision P costs on your own photos and queries: the\n"
	    "      cosine of each embedding to fp32's, and for each text how many\n"
	    "      of its top 10 among the given images agree.\n"
	    "  tokenize [--model DIR] --text STRING [...] | --text-file FILE\n"
	    "      Print one JSON array of the model's padded token ids per input\n"
	    "      (77 for CLIP, 64 for SigLIP).\n"
	    "  classify --model DIR --labels \"cat,dog,remote control\" |\n"
	    "        --labels-file FILE [--template T ...] [--templates NAME]\n"
	    "        [--top K] [--json] [--exact] [--threads N] [--precision P]\n"
	    "        IMAGE...\n"
	    "      Zero-shot classification: each label's text is \"a photo of a\n"
	    "      {label}.\" or the mean over --template/--templates (default,\n"
	    "      imagenet: OpenAI's 80). CLIP: softmax over the labels; SigLIP:\n"
	    "      each label's sigmoid (multi-label). --json: one object per\n"
	    "      image per line, {\"image\", \"mode\", \"labels\": [{\"label\",\n"
	    "      \"prob\"}...]} highest first; else a table.\n"
	    "\n"
	    "Exit codes: 0 ok (also a search that found nothing), 1 the daemon\n"
	    "returned an error or an input failed, 2 usage, 3 model/vocabulary\n"
	    "error, 4 cannot reach the daemon (not running, no reply in time).\n");
}


int
cli_strlist_push(struct strlist *l, char *s)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		char **v = realloc(l->v, cap * sizeof(*v));
		if (v == NULL)
			return CDX_ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = s;
	return 0;
}

/* Reads FILE (or stdin for "-") one text per line into l; the strings are
 * owned by the list afterwards. */
int
cli_read_lines(const char *path, struct strlist *l)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int rc = 0;

	if (f == NULL) {
		fprintf(stderr, "%s: %s: %s\n", cli_prog, path, strerror(errno));
		return CDX_EIO;
	}
	while ((n = getline(&line, &cap, f)) >= 0) {
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		char *copy = strdup(line);
		if (copy == NULL || cli_strlist_push(l, copy) != 0) {
			free(copy);
			rc = CDX_ENOMEM;
			break;
		}
	}
	if (rc == 0 && ferror(f)) {
		fprintf(stderr, "%s: %s: read error\n", cli_prog, path);
		rc = CDX_EIO;
	}
	free(line);
	if (f != stdin)
		fclose(f);
	return rc;
}

/* Prints s as a JSON string. */
void
cli_print_json_string(const char *s)
{
	cJSON *j = cJSON_CreateString(s);
	char *out = j ? cJSON_PrintUnformatted(j) : NULL;
	fputs(out ? out : "null", stdout);
	free(out);
	cJSON_Delete(j);
}

const char *const cli_online_usage[] = {
	"search",
	"usage: clipdex search QUERY... [options]\n"
	"\n"
	"Finds the indexed images that best match QUERY. The words of QUERY are\n"
	"joined by spaces and split into terms at ' + ' and ' - ' (a space on\n"
	"each side; ' - ' subtracts the next term). Each term is [WEIGHT:]SOURCE,\n"
	"SOURCE being text, @FILE or img:FILE (a local image, uploaded),\n"
	"path:PATH (an image on the daemon's machine), id:N (an indexed image) or\n"
	"learned:NAME (a classifier made by clipdex learn).\n"
	"  clipdex search \"a dog on the beach\"\n"
	"  clipdex search \"beach - 0.7:people + 0.5:@example.jpg\"\n"
	"\n"
	"  -k N              results wanted (default 10, at most 1000)\n"
	"  --offset N        skip the N best results first (paging)\n"
	"  --min-score S     drop results with a cosine similarity below S\n"
	"  --min-prob P      drop results whose match probability is below P\n"
	"                    (0..1; text queries of SigLIP models, whose results\n"
	"                    show it as a percentage beside the score)\n"
	"  --prefix PATH     only images whose path starts with PATH\n"
	"  --after T         only images taken (or modified) at or after T\n"
	"  --before T        ... before T; T is seconds since the epoch or\n"
	"                    YYYY-MM-DD[THH:MM[:SS]], read as UTC\n"
	"  --time capture|mtime  the time --after/--before test (default capture)\n"
	"  --collapse S      show near-identical images (similarity >= S) once\n"
	"  --exact           exact preprocessing of uploaded images\n"
	"  --not TEXT        subtract a text term (weight -1); repeatable\n"
	"  --image FILE      add a local image term (weight 1); repeatable\n"
	"  --learned NAME    alone: rank by the learned classifier NAME, its\n"
	"                    probability beside the score; with a QUERY: add\n"
	"                    learned:NAME as a term (weight 1)\n"
	"  --tag TAG         only images with this tag (LABEL or SET/LABEL;\n"
	"                    clipdex tags); repeatable: every one\n"
	"  --not-tag TAG     only images without this tag; repeatable\n"
	"  --json            one JSON object per result per line\n"
	"  --paths           only the paths, one per line\n"
	"Results show each image's tags.\n",
	"similar",
	"usage: clipdex similar FILE|id:N|@FILE [options]\n"
	"\n"
	"The images most like one image: FILE is an indexed image on the\n"
	"daemon's machine (made absolute here), id:N an indexed image by id,\n"
	"@FILE (or img:FILE) a local image that is uploaded. Takes the options\n"
	"of search except --not and --image.\n",
	"add",
	"usage: clipdex add PATH... [--wait] [--json]\n"
	"\n"
	"Indexes image files or folders (recursively). PATH is made absolute\n"
	"and read by the daemon. Without --wait the command returns once the\n"
	"work is queued; with --wait it prints what was added, updated,\n"
	"unchanged and failed (mind --timeout for big folders).\n",
	"remove",
	"usage: clipdex remove PATH... [--json]\n"
	"\n"
	"Forgets the image at PATH or every image under folder PATH. Files are\n"
	"never touched.\n",
	"status",
	"usage: clipdex status [--json]\n"
	"\n"
	"The daemon's counts, model, index, queue, uptime and memory. --json\n"
	"prints the daemon's status object as one line.\n",
	"failures",
	"usage: clipdex failures [--limit N] [--json]\n"
	"\n"
	"Files the daemon could not index, with the reason.\n",
	"dupes",
	"usage: clipdex dupes [--kind exact|near|similar|clips] [--threshold T]\n"
	"                     [--prefix PATH] [--limit N] [--json | --csv]\n"
	"\n"
	"Duplicate groups in the collection, each with the copy to keep (largest\n"
	"resolution, then largest file, then earliest capture time, then\n"
	"shortest path) and each member's similarity to it.\n"
	"  --kind exact      identical files (same bytes) at different paths\n"
	"  --kind near       the same picture re-encoded, resized, cropped a\n"
	"                    little, rotated or edited (default)\n"
	"  --kind similar    similar shots (bursts) that are not near duplicates\n"
	"  --kind clips      video clips compared by their frames, one pair a\n"
	"                    line: near (most frames match, in order) or shares\n"
	"                    (a scene in common), with a matching frame of each\n"
	"                    as PATH@HH:MM:SS (docs/VIDEO.md)\n"
	"  --threshold T     cosine similarity (near: 0.97, similar: 0.90;\n"
	"                    see docs/DUPES.md)\n"
	"  --prefix PATH     only images under PATH\n"
	"  --limit N         groups per request (paging; default 100)\n"
	"  --json            one JSON object per group per line\n"
	"  --csv             one CSV row per image, with a header\n"
	"The default --timeout of dupes is 600000 (a big collection takes\n"
	"minutes).\n",
	"check",
	"usage: clipdex check FILE [--threshold T] [-k N] [--json]\n"
	"\n"
	"Is this image already in the collection? FILE is uploaded; the daemon\n"
	"lists the indexed files with the same bytes (exact) and the near\n"
	"duplicates (similarity >= T, default 0.97) with their similarity.\n"
	"Its exit code answers: 0 not in the collection, 5 already indexed (a\n"
	"file with the same bytes), 6 a near duplicate is indexed (not the same\n"
	"bytes); 1, 2 and 4 as below.\n",
	"classify",
	"usage: clipdex classify --labels \"cat,dog,...\" [options]\n"
	"                        (--id N | --path P | --image FILE | FILE)...\n"
	"       clipdex classify --set NAME (--id N | --path P | --image FILE)...\n"
	"       clipdex classify --model DIR --labels ... [options] FILE...\n"
	"\n"
	"Zero-shot classification: each image's probability for each label,\n"
	"highest first. Without --model the daemon classifies with its model:\n"
	"--id and --path name indexed images (scored from their stored\n"
	"embeddings), --image or FILE uploads a local file. With --model DIR it\n"
	"all runs here (no daemon; --threads N, --precision P as for embed).\n"
	"  --labels L        comma-separated labels\n"
	"  --labels-file F   one label per line (# comments, blank lines skipped)\n"
	"  --template T      a prompt holding {} (default \"a photo of a {}.\");\n"
	"                    repeatable: a label's text embedding is the mean\n"
	"  --templates NAME  a named template set: default or imagenet (OpenAI's\n"
	"                    80); --template adds to it\n"
	"  --set NAME        the labels and rows of a tag set (clipdex tags)\n"
	"  --top N           only the N most probable labels\n"
	"  --exact           exact preprocessing of the image files\n"
	"  --json            one JSON object per image per line, in input order:\n"
	"                    {\"image\", \"id\" (indexed), \"mode\", \"labels\":\n"
	"                    [{\"label\", \"prob\"}]}\n"
	"CLIP models give a softmax over the labels (they sum to 1); SigLIP\n"
	"models each label's own sigmoid probability. The default --timeout\n"
	"of classify is 120000.\n",
	"enqueue",
	"usage: clipdex enqueue --nats URLS PATH... [--replicas N]\n"
	"\n"
	"Puts every file under each PATH (hidden names left out), as its\n"
	"absolute path, on the work queue of a clipdex cluster: the workers\n"
	"(clipdexd --worker) encode each one and hand it to the shard that\n"
	"owns its content.  URLS: nats://HOST:PORT, comma-separated (default\n"
	"$CLIPDEX_NATS).  --replicas: JetStream replicas of the queue when\n"
	"this command makes it (default 1).  The paths must name the same\n"
	"files on the workers' machines.  Prints how many were queued.\n",
	"tags",
	"usage: clipdex tags define NAME --labels \"food,screenshot,...\"\n"
	"                   [--template T]... [--templates NAME]\n"
	"                   [--threshold P] [--multi]\n"
	"       clipdex tags list | show NAME | delete NAME | counts [NAME]\n"
	"\n"
	"Tag sets label the whole collection: every indexed image is scored\n"
	"against the set from its stored embedding, and every image indexed\n"
	"later is tagged as it is stored. Search with --tag and --not-tag.\n"
	"  define            store (or replace) a set and tag every image\n"
	"  --threshold P     a label applies from probability P (default 0.5)\n"
	"  --multi           every label at or over P applies (default: the\n"
	"                    most probable one, when it reaches P)\n"
	"  --labels-file, --template, --templates   as for classify\n"
	"  list              the sets; show NAME: its labels with their image\n"
	"                    counts, and templates\n"
	"  counts [NAME]     images per label (of every set, or of NAME)\n"
	"  --json            one JSON object per line\n"
	"Sets made by another model are rebuilt from their labels when the\n"
	"daemon starts with a new model. The default --timeout of tags is\n"
	"600000 (define tags the whole collection).\n",
	"retrieve",
	"usage: clipdex retrieve --prompts FILE [options] --out FILE.jsonl\n"
	"\n"
	"Retrieves images for many prompts at once (dataset curation). Each line\n"
	"of the prompts file is a text prompt, @IMAGE for an example image\n"
	"(uploaded) or learned:NAME for a classifier made by clipdex learn;\n"
	"blank lines and lines starting with # are skipped. Writes\n"
	"one JSON line per result: prompt, prompt_index, rank, id, path, score,\n"
	"width, height (and file with --copy-to/--link-to). Results are fetched\n"
	"page by page, so any k runs in bounded memory.\n"
	"  --example IMAGE   an example image prompt; repeatable\n"
	"  -k N              results per prompt (default 10, at most 100000)\n"
	"  --min-score S     stop a prompt's results below score S\n"
	"  --negative TEXT   subtracted from every prompt; repeatable\n"
	"  --negative-weight W  weight of the negatives (default 0.5)\n"
	"  --dedupe T        drop results at least T similar to a result kept\n"
	"                    before (for this prompt or an earlier one)\n"
	"  --allow-repeats   an image may appear under several prompts\n"
	"  --copy-to DIR     copy the files into DIR (name-1.jpg, ... when a\n"
	"                    name is taken; nothing is overwritten)\n"
	"  --link-to DIR     the same with symbolic links\n"
	"The default --timeout of retrieve is 600000.\n",
	"learn",
	"usage: clipdex learn NAME --positive LIST [--negative LIST]\n"
	"                     [--threshold P] [--json]\n"
	"       clipdex learn NAME --refit [--threshold P] [--json]\n"
	"\n"
	"Learns a classifier (an L2-regularised logistic regression on the\n"
	"stored embeddings) from example images, keeps it under NAME (replacing\n"
	"one of that name) and tags the collection with it (clipdex tags list).\n"
	"LIST is comma-separated (the options repeat): id:N an indexed image,\n"
	"@FILE a local image (uploaded), anything else a path on the daemon's\n"
	"machine, made absolute here: an indexed image, or a folder (every\n"
	"indexed image under it). At least 2 positive images. Without\n"
	"--negative, random images of the collection serve as unlabeled\n"
	"negatives (said in the output). Prints the examples used and the\n"
	"cross-validated accuracy. Then: clipdex search --learned NAME, or the\n"
	"term learned:NAME in any query.\n"
	"  --threshold P     tags images whose probability is at least P (0.5)\n"
	"  --refit           fit NAME again from the examples it was learned\n"
	"                    from (kept by the daemon as paths: a folder's images\n"
	"                    as they are now; after a model change)\n"
	"  --json            the result as one JSON object\n"
	"The default --timeout of learn is 600000.\n",
	NULL,
};

static const char global_usage[] =
	"Options of every daemon command:\n"
	"  --url URL             daemon address (default $CLIPDEX_URL, else\n"
	"                        ipc://$XDG_RUNTIME_DIR/clipdex.sock, else\n"
	"                        ipc:///tmp/clipdex-<uid>.sock)\n"
	"  --timeout MS          request timeout (default 30000; 0: none)\n"
	"  --connect-timeout MS  how long to wait for the daemon (default 3000)\n"
	"  --token T             access token (default $CLIPDEX_TOKEN)\n"
	"\n"
	"Exit codes: 0 ok (also when nothing matched), 1 the daemon returned an\n"
	"error (or a local input could not be read), 2 usage, 4 cannot reach the\n"
	"daemon (not running, no reply in time).\n";

void
cli_command_usage(FILE *f, const char *cmd)
{
	for (int i = 0; cli_online_usage[i] != NULL; i += 2)
		if (strcmp(cli_online_usage[i], cmd) == 0)
			fprintf(f, "%s\n%s", cli_online_usage[i + 1], global_usage);
}

int
cli_parse_int(const char *opt, const char *s, long lo, long hi, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
		fprintf(stderr, "%s: %s wants a whole number in %ld..%ld, not '%s'\n",
		    cli_prog, opt, lo, hi, s);
		return -1;
	}
	*out = v;
	return 0;
}

int
cli_parse_float(const char *opt, const char *s, double lo, double hi, float *out)
{
	char *end;
	double v = strtod(s, &end);
	if (end == s || *end != '\0' || !(v >= lo && v <= hi)) {
		fprintf(stderr, "%s: %s wants a number in %g..%g, not '%s'\n", cli_prog,
		    opt, lo, hi, s);
		return -1;
	}
	*out = (float)v;
	return 0;
}

/* Seconds since the epoch, or YYYY-MM-DD[(T| )HH:MM[:SS]] as UTC. */
int
cli_parse_time(const char *opt, const char *s, int64_t *out)
{
	struct tm tm;
	int y, mo, d, h = 0, mi = 0, se = 0, n = 0;
	char *end;

	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (end != s && *end == '\0' && errno == 0) {
		*out = v;
		return 0;
	}
	memset(&tm, 0, sizeof(tm));
	if ((sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) == 3 && s[n] == '\0') ||
	    (sscanf(s, "%4d-%2d-%2d%*[T ]%2d:%2d%n", &y, &mo, &d, &h, &mi, &n) == 5 &&
	    s[n] == '\0') ||
	    (sscanf(s, "%4d-%2d-%2d%*[T ]%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &se,
	    &n) == 6 && s[n] == '\0')) {
		if (mo >= 1 && mo <= 12 && d >= 1 && d <= 31 && h >= 0 && h < 24 &&
		    mi >= 0 && mi < 60 && se >= 0 && se < 61) {
			tm.tm_year = y - 1900;
			tm.tm_mon = mo - 1;
			tm.tm_mday = d;
			tm.tm_hour = h;
			tm.tm_min = mi;
			tm.tm_sec = se;
			*out = (int64_t)timegm(&tm);
			return 0;
		}
	}
	fprintf(stderr, "%s: %s wants seconds since the epoch or "
	    "YYYY-MM-DD[THH:MM[:SS]], not '%s'\n", cli_prog, opt, s);
	return -1;
}

/* Makes path absolute: realpath() when it exists, else lexically (".",
 * ".." and repeated "/" removed; a trailing "/" is kept).  Malloc'd. */
char *
cli_absolute_path(const char *path)
{
	size_t n = strlen(path);
	int trailing = n > 1 && path[n - 1] == '/';
	char *r = realpath(path, NULL);
	if (r != NULL) {
		if (trailing && strcmp(r, "/") != 0) {
			char *t = realloc(r, strlen(r) + 2);
			if (t == NULL) {
				free(r);
				return NULL;
			}
			strcat(t, "/");
			r = t;
		}
		return r;
	}
	char cwd[4096] = "";
	if (path[0] != '/' && getcwd(cwd, sizeof(cwd)) == NULL)
		return NULL;
	size_t cap = strlen(cwd) + n + 3;
	char *joined = malloc(cap), *out = malloc(cap);
	if (joined == NULL || out == NULL) {
		free(joined);
		free(out);
		return NULL;
	}
	snprintf(joined, cap, "%s/%s", cwd, path);
	size_t o = 0;
	for (char *p = joined; *p;) {
		while (*p == '/')
			p++;
		char *e = p + strcspn(p, "/");
		size_t len = (size_t)(e - p);
		if (len == 0 || (len == 1 && p[0] == '.')) {
		} else if (len == 2 && p[0] == '.' && p[1] == '.') {
			while (o > 0 && out[o - 1] != '/')
				o--;
			if (o > 0)
				o--;
		} else {
			out[o++] = '/';
			memcpy(out + o, p, len);
			o += len;
		}
		p = e;
	}
	if (o == 0 || trailing)
		out[o++] = '/';
	out[o] = '\0';
	free(joined);
	return out;
}

/* Reads one global option at argv[*i]; returns 1 if it was one, 0 if not,
 * -1 on a usage error. */
int
cli_global_opt(int argc, char **argv, int *i, struct gopts *g)
{
	const char *a = argv[*i];
	static const char *names[] = { "--url", "--timeout", "--token",
		"--connect-timeout" };
	for (int k = 0; k < 4; k++) {
		size_t nl = strlen(names[k]);
		const char *val;
		if (strncmp(a, names[k], nl) != 0 || (a[nl] != '\0' && a[nl] != '='))
			continue;
		if (a[nl] == '=') {
			val = a + nl + 1;
		} else if (*i + 1 < argc) {
			val = argv[++*i];
		} else {
			fprintf(stderr, "%s: %s needs a value\n", cli_prog, names[k]);
			return -1;
		}
		long v;
		switch (k) {
		case 0: g->url = val; break;
		case 1:
			if (cli_parse_int(names[k], val, 0, INT32_MAX, &v) != 0)
				return -1;
			g->timeout_ms = (int)v;
			break;
		case 2: g->token = val; break;
		case 3:
			if (cli_parse_int(names[k], val, 0, INT32_MAX, &v) != 0)
				return -1;
			g->connect_ms = (int)v;
			break;
		}
		return 1;
	}
	return 0;
}

/* Parses the options of a daemon command (argv[start..]). */
int
cli_parse_online(int argc, char **argv, int start, int cmd, struct sopts *o)
{
	int query_cmd = cmd & (OPT_SEARCH | OPT_SIMILAR);
	int only_positional = 0;

	for (int i = start; i < argc; i++) {
		char *a = argv[i];
		if (only_positional || a[0] != '-' || strcmp(a, "-") == 0) {
			if (!(cmd & (OPT_SEARCH | OPT_SIMILAR | OPT_ADD | OPT_REMOVE))) {
				fprintf(stderr, "%s: unexpected argument '%s'\n", cli_prog, a);
				return EXIT_USAGE;
			}
			if (cli_strlist_push(&o->words, a) != 0)
				return EXIT_INPUT;
			continue;
		}
		if (strcmp(a, "--") == 0) {
			only_positional = 1;
			continue;
		}
		int g = cli_global_opt(argc, argv, &i, &o->g);
		if (g < 0)
			return EXIT_USAGE;
		if (g > 0)
			continue;
		/* --name=value or -k N / -kN */
		char name[64];
		const char *val = NULL;
		const char *eq = strchr(a, '=');
		if (a[1] == 'k' && a[2] != '\0' && a[1] != '-') {
			snprintf(name, sizeof(name), "-k");
			val = a + 2;
		} else if (eq != NULL && a[1] == '-') {
			snprintf(name, sizeof(name), "%.*s", (int)(eq - a), a);
			val = eq + 1;
		} else {
			snprintf(name, sizeof(name), "%s", a);
		}
		static const struct { const char *name; int cmds; int takes; } known[] = {
			{ "-h", ~0, 0 }, { "--help", ~0, 0 },
			{ "--json", ~0, 0 },
			{ "--paths", OPT_SEARCH | OPT_SIMILAR, 0 },
			{ "-k", OPT_SEARCH | OPT_SIMILAR, 1 },
			{ "--offset", OPT_SEARCH | OPT_SIMILAR, 1 },
			{ "--min-score", OPT_SEARCH | OPT_SIMILAR, 1 },
			{ "--min-prob", OPT_SEARCH, 1 },
			{ "--prefix", OPT_SEARCH | OPT_SIMILAR, 1 },
			{ "--after", OPT_SEARCH | OPT_SIMILAR, 1 },
			{ "--before", OPT_SEARCH | OPT_SIMILAR, 1 },
			{ "--time", OPT_SEARCH | OPT_SIMILAR, 1 },
			{ "--collapse", OPT_SEARCH | OPT_SIMILAR, 1 },
			{ "--exact", OPT_SEARCH | OPT_SIMILAR, 0 },
			{ "--not", OPT_SEARCH, 1 },
			{ "--image", OPT_SEARCH, 1 },
			{ "--learned", OPT_SEARCH, 1 },
			{ "--tag", OPT_SEARCH | OPT_SIMILAR, 1 },
			{ "--not-tag", OPT_SEARCH | OPT_SIMILAR, 1 },
			{ "--wait", OPT_ADD, 0 },
			{ "--limit", OPT_FAILURES, 1 },
		};
		int k = -1;
		for (size_t j = 0; j < sizeof(known) / sizeof(known[0]); j++)
			if (strcmp(known[j].name, name) == 0 && (known[j].cmds & cmd))
				k = (int)j;
		if (k < 0) {
			fprintf(stderr, "%s: unknown option '%s' (see %s %s --help)\n",
			    cli_prog, name, cli_prog, argv[start - 1]);
			return EXIT_USAGE;
		}
		if (known[k].takes && val == NULL) {
			if (i + 1 >= argc) {
				fprintf(stderr, "%s: %s needs a value\n", cli_prog, name);
				return EXIT_USAGE;
			}
			val = argv[++i];
		} else if (!known[k].takes && val != NULL) {
			fprintf(stderr, "%s: %s takes no value\n", cli_prog, name);
			return EXIT_USAGE;
		}
		long v;
		int bad = 0;
		if (strcmp(name, "-h") == 0 || strcmp(name, "--help") == 0) {
			o->help = 1;
		} else if (strcmp(name, "--json") == 0) {
			o->json = 1;
		} else if (strcmp(name, "--paths") == 0) {
			o->paths = 1;
		} else if (strcmp(name, "-k") == 0) {
			bad = cli_parse_int(name, val, 1, INT32_MAX, &v);
			o->q.k = (int)v;
		} else if (strcmp(name, "--offset") == 0) {
			bad = cli_parse_int(name, val, 0, INT32_MAX, &v);
			o->q.offset = (int)v;
		} else if (strcmp(name, "--min-score") == 0) {
			bad = cli_parse_float(name, val, -1.0, 1.0, &o->q.min_score);
			o->q.has_min_score = 1;
		} else if (strcmp(name, "--min-prob") == 0) {
			bad = cli_parse_float(name, val, 0.0, 1.0, &o->q.min_prob);
			o->q.has_min_prob = 1;
		} else if (strcmp(name, "--prefix") == 0) {
			o->q.path_prefix = val;
		} else if (strcmp(name, "--after") == 0) {
			bad = cli_parse_time(name, val, &o->after);
			o->has_after = 1;
		} else if (strcmp(name, "--before") == 0) {
			bad = cli_parse_time(name, val, &o->before);
			o->has_before = 1;
		} else if (strcmp(name, "--time") == 0) {
			if (strcmp(val, "capture") == 0)
				o->q.time_field = CDX_TIME_CAPTURE;
			else if (strcmp(val, "mtime") == 0)
				o->q.time_field = CDX_TIME_MTIME;
			else {
				fprintf(stderr, "%s: --time wants capture or mtime\n", cli_prog);
				bad = 1;
			}
		} else if (strcmp(name, "--collapse") == 0) {
			bad = cli_parse_float(name, val, 1e-6, 1.0, &o->q.collapse);
		} else if (strcmp(name, "--exact") == 0) {
			o->q.exact = 1;
		} else if (strcmp(name, "--not") == 0) {
			bad = cli_strlist_push(&o->nots, (char *)val) != 0;
		} else if (strcmp(name, "--image") == 0) {
			bad = cli_strlist_push(&o->images, (char *)val) != 0;
		} else if (strcmp(name, "--learned") == 0) {
			o->q.learned = val;
		} else if (strcmp(name, "--tag") == 0) {
			bad = cli_strlist_push(&o->tags, (char *)val) != 0;
		} else if (strcmp(name, "--not-tag") == 0) {
			bad = cli_strlist_push(&o->not_tags, (char *)val) != 0;
		} else if (strcmp(name, "--wait") == 0) {
			o->wait = 1;
		} else if (strcmp(name, "--limit") == 0) {
			bad = cli_parse_int(name, val, 1, INT32_MAX, &v);
			o->limit = (int)v;
		}
		if (bad)
			return EXIT_USAGE;
	}
	if (o->help)
		return 0;
	if (query_cmd) {
		o->q.tags = (const char *const *)o->tags.v;
		o->q.n_tags = o->tags.n;
		o->q.not_tags = (const char *const *)o->not_tags.v;
		o->q.n_not_tags = o->not_tags.n;
		if (o->json && o->paths) {
			fprintf(stderr, "%s: --json and --paths exclude each other\n",
			    cli_prog);
			return EXIT_USAGE;
		}
		if (o->has_after || o->has_before) {
			if (o->q.time_field == CDX_TIME_NONE)
				o->q.time_field = CDX_TIME_CAPTURE;
			/* 0 means "open" to the library: 0 itself becomes 1 s later. */
			o->q.time_from = o->has_after ? (o->after == 0 ? 1 : o->after) : 0;
			if (o->has_before) {
				int64_t to = o->before - 1;   /* --before is exclusive */
				o->q.time_to = to == 0 ? -1 : to;
			}
		} else if (o->q.time_field != CDX_TIME_NONE) {
			fprintf(stderr, "%s: --time needs --after or --before\n", cli_prog);
			return EXIT_USAGE;
		}
	}
	return 0;
}

void
cli_free_sopts(struct sopts *o)
{
	free(o->words.v);
	free(o->nots.v);
	free(o->images.v);
	free(o->tags.v);
	free(o->not_tags.v);
}

/* Opens the client with the global options; prints why it could not. */
int
cli_open_client(const struct gopts *g, cdx_client **c)
{
	int rc = cdx_client_open(g->url, c);
	if (rc != 0) {
		fprintf(stderr, "%s: %s\n", cli_prog, cdx_client_errmsg(NULL));
		return rc == CDX_EINVAL ? EXIT_USAGE : EXIT_UNREACHABLE;
	}
	cdx_client_set_timeout(*c, g->timeout_ms);
	cdx_client_set_connect_timeout(*c, g->connect_ms);
	const char *token = g->token ? g->token : getenv("CLIPDEX_TOKEN");
	if (token != NULL && token[0] != '\0' &&
	    cdx_client_set_token(*c, token) != 0) {
		fprintf(stderr, "%s: out of memory\n", cli_prog);
		cdx_client_close(*c);
		return EXIT_INPUT;
	}
	return 0;
}

/* Reports a failed call and gives the exit status for it. */
int
cli_call_failed(cdx_client *c, const char *what, int rc)
{
	const char *msg = cdx_client_errmsg(c);
	fprintf(stderr, "%s: %s: %s\n", cli_prog, what, msg[0] ? msg :
	    cdx_strerror(rc));
	return rc == CDX_ECLOSED || rc == CDX_ETIMEDOUT ? EXIT_UNREACHABLE :
	    EXIT_DAEMON;
}


int
cli_finish_output(void)
{
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "%s: cannot write the output: %s\n", cli_prog,
		    strerror(errno));
		return EXIT_INPUT;
	}
	return 0;
}
