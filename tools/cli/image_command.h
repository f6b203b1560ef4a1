// image: one GenerateImage call built from the options, its stream read to
// the end; each GeneratedImage's PNG bytes written to a file as it arrives.
// While the images are made, a progress bar is redrawn on stderr when stderr
// is a terminal; --json prints one object on stdout at the end instead of
// the file list. Returns the exit status: 0 OK, 1 the server failed the call
// or a file could not be written.
#pragma once

#include <string>

#include "tern/v1/diffusion.grpc.pb.h"
#include "tools/cli/cli_options.h"
#include "tools/cli/stream_printer.h"

namespace tern::cli {

// The request as sent: the class by name or label, or the prompt
// (options.args[0]); steps, guidance, sampler, seed and count when given.
tern::v1::GenerateImageRequest MakeImageRequest(const CliOptions& options);

// Where image `index` of `count` goes: `output` itself for one image, else
// `output` with "-<index>" before its extension ("out.png" -> "out-2.png";
// "out" -> "out-2").
std::string ImageFileName(const std::string& output, int index, int count);

// "[#########...........]  9/20 steps  1.2 s" in `width` columns or fewer.
std::string ProgressLine(int step, int total_steps, double elapsed_seconds, int width);

int RunImage(tern::v1::Diffusion::StubInterface* stub, const CliOptions& options, const Console& console);

}  // namespace tern::cli
