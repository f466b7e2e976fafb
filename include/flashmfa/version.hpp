// flashmfa: version numbers (kept in step with CMakeLists.txt's project() version).
#pragma once

#define FLASHMFA_VERSION_MAJOR 0
#define FLASHMFA_VERSION_MINOR 1
#define FLASHMFA_VERSION_PATCH 0

namespace flashmfa {
constexpr int kVersionMajor = FLASHMFA_VERSION_MAJOR;
constexpr int kVersionMinor = FLASHMFA_VERSION_MINOR;
constexpr int kVersionPatch = FLASHMFA_VERSION_PATCH;
}  // namespace flashmfa
