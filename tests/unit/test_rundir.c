/* Unit tests of run directory naming (src/cli/rundir.c) and the SHA-256
 * behind its hash suffix. Restart finds a run directory by deriving its
 * name again, so these names must never change between versions: the
 * expected values below are pinned on purpose.
 *
 * The Makefile links unit tests with the image, common and protocol
 * sources only, so the sources under test are included here. */
#include "cli/rundir.c"
#include "cli/sha256.c"
#include "coord/err.c"
#include "coord/fsutil.c"
#include "coord/kvfile.c"

static int failures;

static void expect_name(const char *id, char *const *cmd, int n, const char *want)
{
	char *got = rundir_name(id, cmd, n);
	if (!got || strcmp(got, want) != 0) {
		fprintf(stderr, "rundir_name: got %s, want %s\n", got ? got : "(null)", want);
		failures++;
	}
	free(got);
}

static void test_plain(void)
{
	char *a[] = {"counter", "3", "0"};
	expect_name(NULL, a, 3, "counter_3_0");
	expect_name("job7", a, 3, "job7_counter_3_0");
	char *b[] = {"/opt/x/train.py", "--lr", "0.1"};
	expect_name(NULL, b, 3, "train_--lr_0.1");
	char *c[] = {"./train.py"};
	expect_name("r_1", c, 1, "r_1_train");
	char *d[] = {"prog", "a,b+c=d@e"};
	expect_name(NULL, d, 2, "prog_a,b+c=d@e");
	/* ".py" alone is not a script name to strip */
	char *e[] = {".py"};
	expect_name(NULL, e, 1, "_py_e90d1f16856b9b6d");
}

static void test_hashed(void)
{
	/* Unsafe bytes are replaced and a hash of the command line added. */
	char *a[] = {"echo", "a/b c*d;e'f"};
	expect_name(NULL, a, 2, "echo_a-b-c-d-e-f_b9437b5dd23d2eb7");
	/* A leading '-' or '.' would read as an option or hide the name. */
	char *b[] = {"-x"};
	char *name = rundir_name(NULL, b, 1);
	if (!name || name[0] != '_' || strlen(name) != 2 + 17) {
		fprintf(stderr, "leading '-': got %s\n", name ? name : "(null)");
		failures++;
	}
	free(name);
	/* Long names are cut to 100 bytes, hash included, and differ. */
	char longa[400], longb[400];
	memset(longa, 'x', 300);
	memcpy(longb, longa, 300);
	strcpy(longa + 300, "a");
	strcpy(longb + 300, "b");
	char *la[] = {"echo", longa}, *lb[] = {"echo", longb};
	char *na = rundir_name(NULL, la, 2), *nb = rundir_name(NULL, lb, 2);
	if (!na || !nb || strlen(na) != RUNDIR_NAME_MAX || strlen(nb) != RUNDIR_NAME_MAX ||
	    !strcmp(na, nb)) {
		fprintf(stderr, "long names: %s / %s\n", na ? na : "(null)", nb ? nb : "(null)");
		failures++;
	}
	free(na);
	free(nb);
	/* With and without an id never share a hash: "a b" vs id "a" + "b". */
	char *c1[] = {"a", "b/"}, *c2[] = {"b/"};
	char *n1 = rundir_name(NULL, c1, 2), *n2 = rundir_name("a", c2, 1);
	if (!n1 || !n2 || !strcmp(n1, n2)) {
		fprintf(stderr, "id vs no id: %s / %s\n", n1 ? n1 : "(null)", n2 ? n2 : "(null)");
		failures++;
	}
	free(n1);
	free(n2);
}

static void test_sha256(void)
{
	static const struct {
		const char *in, *hex;
	} v[] = {
	    {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
	    {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
	    {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
	     "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
	};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		struct sha256 s;
		unsigned char d[32];
		char hex[65];
		sha256_init(&s);
		/* Byte by byte, to cross block boundaries the slow way too. */
		for (const char *p = v[i].in; *p; p++)
			sha256_update(&s, p, 1);
		sha256_final(&s, d);
		for (int k = 0; k < 32; k++)
			sprintf(hex + 2 * k, "%02x", d[k]);
		if (strcmp(hex, v[i].hex)) {
			fprintf(stderr, "sha256(%s) = %s, want %s\n", v[i].in, hex, v[i].hex);
			failures++;
		}
	}
}

int main(void)
{
	test_plain();
	test_hashed();
	test_sha256();
	if (failures) {
		fprintf(stderr, "test_rundir: %d check(s) failed\n", failures);
		return 1;
	}
	printf("test_rundir: all checks passed\n");
	return 0;
}
