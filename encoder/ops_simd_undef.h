/* ops_simd_undef.h - undoes the names ops.c defines for ops_simd.h, so
 * that the next width can define them again.  No include guard. */
#undef VN
#undef vf
#undef K
#undef ATTR
#undef v_load
#undef v_load_i32
#undef v_store
#undef v_store_s8
#undef v_set1
#undef v_zero
#undef v_add
#undef v_sub
#undef v_mul
#undef v_div
#undef v_fmadd
#undef v_fnmadd
#undef v_max
#undef v_min
#undef v_floor
#undef v_and
#undef v_andnot
#undef v_or
#undef v_pow2i
#undef v_hsum
#undef v_hmax
