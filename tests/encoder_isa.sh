#!/bin/sh
# The precision suite (tests/encoder_precision.c) and the GEMM epilogue's
# (tests/encoder_gemm.c) on the kernels of older CPUs: oneDNN is told to
# use at most AVX2 (no VNNI, no native bf16: bf16 is emulated on OpenBLAS,
# int8 runs oneDNN's AVX2 kernels, auto picks fp32), then at most AVX-512
# without VNNI or bf16.  Then the GEMM tests again on a team of 3 OpenMP
# threads, whatever the cores: the row tiles taken in turn by more than
# two threads, and by more threads than cores.  Then ops.c's narrower
# kernels (CDX_MAX_SIMD: AVX2, then the portable code) under the kernel and
# GEMM tests: on an AVX-512 CPU they would not run otherwise.  Each run's
# cmocka summary is counted by tests/run.sh.
BUILD=${BUILD:-build}
status=0
for isa in AVX2 AVX512_CORE; do
	echo "== DNNL_MAX_CPU_ISA=$isa"
	DNNL_MAX_CPU_ISA=$isa "$BUILD/tests/encoder_precision" || status=1
	DNNL_MAX_CPU_ISA=$isa "$BUILD/tests/encoder_gemm" || status=1
done
echo "== OMP_NUM_THREADS=3"
OMP_NUM_THREADS=3 "$BUILD/tests/encoder_gemm" || status=1
for simd in avx2 scalar; do
	echo "== CDX_MAX_SIMD=$simd"
	CDX_MAX_SIMD=$simd "$BUILD/tests/encoder_ops" || status=1
	CDX_MAX_SIMD=$simd "$BUILD/tests/encoder_gemm" || status=1
done
exit $status
