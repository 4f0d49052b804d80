// The forward launchers' A/B switches: environment variables read on every call, so that one process can
// time a kernel both ways (benchmarks and device scripts set them; users never need to).
#pragma once

#include <cstdint>
#include <cstdlib>

namespace flash_attn_ext::cuda {

// On when the variable's value starts with '1', off when it starts with anything else, `fallback` unset.
inline bool env_flag(const char* name, bool fallback) {
  const char* v = std::getenv(name);
  return v == nullptr ? fallback : v[0] == '1';
}

// The variable's value when it is set to a positive number, else `fallback`.
inline int64_t env_int(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  const int64_t n = v != nullptr ? std::atoll(v) : 0;
  return n > 0 ? n : fallback;
}

}  // namespace flash_attn_ext::cuda
