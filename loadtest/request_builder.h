// The GenerateRequest tern-load sends for one planned request: prompt,
// sampling, and the decoding (normal, Skeleton-of-Thought or AUTO) with its
// SoT options. Pure: no I/O, any thread.
#pragma once

#include <string>
#include <vector>

#include "loadtest/options.h"
#include "loadtest/workload.h"
#include "tern/v1/diffusion.pb.h"
#include "tern/v1/llm.pb.h"

namespace tern::loadtest {

// The --sot-outline-points outline: "Part 1", "Part 2", ... (`points` >= 1).
std::vector<std::string> SyntheticOutline(int points);

// `prompts` is the loaded prompt list (unused for synthetic prompts).
tern::v1::GenerateRequest BuildGenerateRequest(const LoadOptions& options, const PlannedRequest& planned,
                                               const std::vector<std::string>& prompts);

// The GenerateImageRequest of a planned image request: --image-model, its
// class and steps, --image-guidance, and a seed from --seed and the index.
tern::v1::GenerateImageRequest BuildImageRequest(const LoadOptions& options, const PlannedRequest& planned);

}  // namespace tern::loadtest
