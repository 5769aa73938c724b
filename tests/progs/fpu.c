/* fpu STEPS SLEEP_MS: floating-point state live across the sleep. Four
 * __m256d accumulators and one __m256i stay in ymm registers, and one long
 * double on the x87 stack, while the thread sleeps (the sleep is a raw
 * syscall that tells the compiler those registers are in use, so they are
 * not spilled to memory). The rounding mode is set to round-toward-zero in
 * both MXCSR and the x87 control word, so results depend on that state
 * too. Values print in hex (%a), exactly. */
#include "common.h"
#include <fenv.h>
#include <immintrin.h>
#include <sys/syscall.h>

/* nanosleep(ms) with v0..v3, iv and ld pinned in registers throughout. */
#define SLEEP_KEEPING(ms, v0, v1, v2, v3, iv, ld)                                                  \
	do {                                                                                       \
		struct timespec ts_ = {(ms) / 1000, ((ms) % 1000) * 1000000L};                     \
		long r_;                                                                           \
		do {                                                                               \
			__asm__ volatile("syscall"                                                 \
					 : "=a"(r_), "+x"(v0), "+x"(v1), "+x"(v2), "+x"(v3),       \
					   "+x"(iv), "+t"(ld)                                      \
					 : "0"((long)SYS_nanosleep), "D"(&ts_), "S"(&ts_)          \
					 : "rcx", "r11", "memory");                                \
		} while (r_ == -EINTR);                                                            \
		if (r_ < 0) {                                                                      \
			errno = (int)-r_;                                                          \
			die("nanosleep");                                                          \
		}                                                                                  \
	} while (0)

static unsigned x87_control(void)
{
	unsigned short cw;
	__asm__ volatile("fnstcw %0" : "=m"(cw));
	return cw;
}

int main(int argc, char **argv)
{
	long steps, sleep;
	steps_and_sleep(argc, argv, &steps, &sleep);
	if (!__builtin_cpu_supports("avx2")) {
		printf("avx2 not supported by this cpu\n");
		return 3;
	}
	if (fesetround(FE_TOWARDZERO))
		die("fesetround");

	__m256d v0 = _mm256_set_pd(1.0, 2.0, 3.0, 4.0);
	__m256d v1 = _mm256_set_pd(0.1, 0.2, 0.3, 0.4);
	__m256d v2 = _mm256_setzero_pd();
	__m256d v3 = _mm256_set_pd(-1.5, 2.5, -3.5, 4.5);
	__m256i iv = _mm256_set_epi64x(1, 2, 3, 4);
	long double ld = 1.0L;

	for (long s = 0; s < steps; s++) {
		__m256d k = _mm256_set1_pd((double)s + 1.0);
		v0 = _mm256_add_pd(_mm256_mul_pd(v0, _mm256_set1_pd(0.999)), _mm256_set1_pd(1.1));
		v1 = _mm256_sqrt_pd(_mm256_add_pd(v1, v0));
		v2 = _mm256_add_pd(v2, _mm256_div_pd(_mm256_set1_pd(1.0), k));
		v3 = _mm256_div_pd(_mm256_add_pd(v3, v2), _mm256_set1_pd(3.0));
		iv = _mm256_add_epi64(_mm256_xor_si256(iv, _mm256_slli_epi64(iv, 13)),
				      _mm256_set1_epi64x(s * 0x9e37));
		ld = ld * 1.0000001L + 1.0L / (long double)(s + 3);

		if (sleep)
			SLEEP_KEEPING(sleep, v0, v1, v2, v3, iv, ld);

		double a[4], b[4], c[4], d[4];
		unsigned long long w[4];
		_mm256_storeu_pd(a, v0);
		_mm256_storeu_pd(b, v1);
		_mm256_storeu_pd(c, v2);
		_mm256_storeu_pd(d, v3);
		_mm256_storeu_si256((__m256i *)w, iv);
		printf("step %ld v0=%a,%a v1=%a,%a v2=%a v3=%a,%a iv=%016llx,%016llx ld=%La "
		       "mxcsr=%04x x87cw=%04x\n",
		       s, a[0], a[3], b[1], b[2], c[0], d[0], d[3], w[0], w[3], ld,
		       _mm_getcsr() & 0xffc0u, x87_control());
	}
	double a[4], b[4], c[4], d[4];
	_mm256_storeu_pd(a, v0);
	_mm256_storeu_pd(b, v1);
	_mm256_storeu_pd(c, v2);
	_mm256_storeu_pd(d, v3);
	uint64_t h = fnv1a(FNV_INIT, a, sizeof a);
	h = fnv1a(h, b, sizeof b);
	h = fnv1a(h, c, sizeof c);
	h = fnv1a(h, d, sizeof d);
	unsigned long long w[4];
	_mm256_storeu_si256((__m256i *)w, iv);
	h = fnv1a(h, w, sizeof w);
	h = fnv1a(h, &ld, 10);
	printf("done steps=%ld round=%s checksum=%016llx\n", steps,
	       fegetround() == FE_TOWARDZERO ? "towardzero" : "CHANGED", (unsigned long long)h);
	return 0;
}
