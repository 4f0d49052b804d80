// The polynomial behind every vector exp2 of the CPU kernels.
//
// 2^x = 2^n * 2^f with n = round(x) and f in [-0.5, 0.5]; 2^f is the degree-6
// polynomial below, fitted for least maximum relative error on that interval
// (about 2e-9 in exact arithmetic, under 1 ulp of float32 with Horner's rule
// and FMA; checked by benchmarks/cpu_smoke.py).
#pragma once

namespace flash_attn_ext::cpu {
namespace {

constexpr float kExp2Poly[7] = {1.000000000e+00f, 6.931471825e-01f, 2.402264625e-01f, 5.550328642e-02f,
                                9.618489072e-03f, 1.339993090e-03f, 1.534581243e-04f};

// Inputs are clamped up to this first; it rounds to n = -127, whose 2^n bit pattern
// is 0.0f, so anything at or below about -126.5 (and -inf) becomes exactly 0.
constexpr float kExp2Floor = -127.0f;

}  // namespace
}  // namespace flash_attn_ext::cpu
