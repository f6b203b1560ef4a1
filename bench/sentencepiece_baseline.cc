#include "bench/sentencepiece_baseline.h"

#ifdef TERN_HAVE_SENTENCEPIECE
#include <sentencepiece_processor.h>
#endif

namespace tern::bench {

#ifdef TERN_HAVE_SENTENCEPIECE
namespace {

class Processor : public SentencePieceBaseline {
 public:
  sentencepiece::SentencePieceProcessor sp;
  std::vector<int> Encode(const std::string& text) const override {
    std::vector<int> ids;
    sp.Encode(text, &ids).IgnoreError();
    return ids;
  }
};

}  // namespace

bool SentencePieceBaseline::Available() { return true; }

std::unique_ptr<SentencePieceBaseline> SentencePieceBaseline::Load(const std::string& model_path,
                                                                   std::string* error) {
  auto p = std::make_unique<Processor>();
  const auto status = p->sp.Load(model_path);
  if (!status.ok()) {
    *error = status.ToString();
    return nullptr;
  }
  return p;
}

#else

bool SentencePieceBaseline::Available() { return false; }

std::unique_ptr<SentencePieceBaseline> SentencePieceBaseline::Load(const std::string&, std::string* error) {
  *error = "built without libsentencepiece";
  return nullptr;
}

#endif

}  // namespace tern::bench
