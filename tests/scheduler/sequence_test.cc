// Sequence's output text: special tokens are dropped from it unless the
// request asks for them (SamplingParams::skip_special_tokens, the proto's
// include_special_tokens), while their ids are always returned. And its
// sampling state counts output tokens only when penalties need them.
#include "scheduler/sequence.h"

#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "gtest/gtest.h"
#include "runtime/tokenizer/tokenizer.h"
#include "scheduler/tenant.h"

namespace tern::scheduler {
namespace {

TEST(SequenceTextTest, SpecialTokensAreDroppedUnlessAskedFor) {
  auto tokenizer = runtime::Tokenizer::FromModelDirectory(TERN_TEST_DATA_DIR "/tokenizers/llama2");
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  const runtime::Tokenizer& tok = **tokenizer;
  constexpr int32_t kBos = 1;  // <s>: special, and not the EOS that would end the sequence
  std::vector<int32_t> output = tok.Encode(" Hello", false);
  output.push_back(kBos);
  const std::vector<int32_t> tail = tok.Encode(" world", false);
  output.insert(output.end(), tail.begin(), tail.end());
  const std::vector<int32_t> eos = {2};
  Tenant tenant;
  tenant.name = "t";
  for (const bool skip : {true, false}) {
    SequenceGroup::Options options;
    options.request_id = "r";
    options.tenant = &tenant;
    options.sampling.skip_special_tokens = skip;
    SequenceGroup group(options, 0, 1, /*shared_prefix_len=*/0);
    Sequence seq(1, 0, &group, tok.Encode("Say", true), 1, group.sampling(), eos, &tok);
    for (int32_t id : output) {
      runtime::SampledToken token;
      token.token_id = id;
      seq.AppendOutput(token, 4096);
    }
    EXPECT_EQ(seq.pending().token_ids, output);
    const std::string& text = seq.pending().text;
    auto decoded = tok.Decode(output, skip);
    ASSERT_TRUE(decoded.ok());
    EXPECT_EQ(text.find("<s>") != std::string::npos, !skip) << text;
    EXPECT_NE(text.find("Hello"), std::string::npos) << text;
    EXPECT_NE(text.find("world"), std::string::npos) << text;
    // The output continues the prompt, so it may keep a leading space that
    // Decode drops at the start of a text.
    EXPECT_EQ(absl::StripLeadingAsciiWhitespace(text), absl::StripLeadingAsciiWhitespace(*decoded))
        << "skip_special_tokens=" << skip;
  }
}

TEST(SequenceSamplingTest, OutputCountsAreTrackedOnlyForPenalties) {
  Tenant tenant;
  tenant.name = "t";
  const std::vector<int32_t> eos = {2};
  for (const bool penalized : {false, true}) {
    SequenceGroup::Options options;
    options.request_id = "r";
    options.tenant = &tenant;
    options.sampling.temperature = 0.0f;
    if (penalized) options.sampling.frequency_penalty = 0.3f;
    SequenceGroup group(options, 0, 1, /*shared_prefix_len=*/0);
    Sequence seq(1, 0, &group, {5, 6, 7}, 1, group.sampling(), eos, nullptr);
    for (int32_t id : {9, 9, 11}) {
      runtime::SampledToken token;
      token.token_id = id;
      seq.AppendOutput(token, 4096);
    }
    const runtime::SequenceSamplingState& state = seq.sampling_state();
    EXPECT_EQ(state.tracks_output_counts(), penalized);
    EXPECT_EQ(state.num_output_tokens(), 3);
    EXPECT_EQ(state.output_counts().size(), penalized ? 2u : 0u);
    if (penalized) {
      EXPECT_EQ(state.output_counts().at(9), 2);
    }
  }
}

// Planning ahead: a reserved output holds its place (the random stream past
// it, hashes short of it), resolving it is appending it, and dropping it
// gives back the sequence as it was; an abort drops it too.
TEST(SequenceReservationTest, ReserveResolveAndDrop) {
  Tenant tenant;
  tenant.name = "t";
  SequenceGroup::Options options;
  options.request_id = "r";
  options.tenant = &tenant;
  options.sampling.temperature = 0.7f;
  options.sampling.max_tokens = 3;
  SequenceGroup group(options, 0, 1, 0);
  BlockManager blocks(BlockManagerOptions{16, 4, true});
  const std::vector<int32_t> prompt = {5, 6, 7};
  Sequence seq(1, 0, &group, prompt, 42, group.sampling(), {}, nullptr);
  Sequence twin(2, 0, &group, prompt, 42, group.sampling(), {}, nullptr);  // appends without reserving
  runtime::SampledToken token;
  token.token_id = 9;

  const double first_uniform = seq.sampling_state().NextUniform();
  seq.ReserveOutput();
  EXPECT_TRUE(seq.has_reserved_output());
  EXPECT_EQ(seq.tokens(), (std::vector<int32_t>{5, 6, 7, kReservedToken}));
  EXPECT_EQ(seq.known_tokens().size(), 3u);
  twin.AppendOutput(token, 4096);
  // The next position's draw, as after an append.
  EXPECT_EQ(seq.sampling_state().NextUniform(), twin.sampling_state().NextUniform());
  EXPECT_NE(seq.sampling_state().NextUniform(), first_uniform);
  // A block of four would hold the reservation: it is not hashed yet.
  seq.UpdateHashes(blocks);
  EXPECT_TRUE(seq.block_hashes().empty());

  seq.DropReservedOutput();
  EXPECT_FALSE(seq.has_reserved_output());
  EXPECT_EQ(seq.tokens(), prompt);
  EXPECT_EQ(seq.sampling_state().NextUniform(), first_uniform);

  seq.ReserveOutput();
  seq.ResolveOutput(token, 4096);
  EXPECT_EQ(seq.tokens(), twin.tokens());
  EXPECT_EQ(seq.pending().token_ids, twin.pending().token_ids);
  EXPECT_EQ(seq.sampling_state().NextUniform(), twin.sampling_state().NextUniform());
  seq.UpdateHashes(blocks);
  EXPECT_EQ(seq.block_hashes().size(), 1u);

  // An abort with an output reserved: the sequence keeps what it had.
  seq.ReserveOutput();
  seq.Abort();
  EXPECT_TRUE(seq.finished());
  EXPECT_FALSE(seq.has_reserved_output());
  EXPECT_EQ(seq.num_output_tokens(), 1);

  // max_tokens: the resolved output can finish the sequence, as an append does.
  twin.ReserveOutput();
  twin.ResolveOutput(token, 4096);
  twin.ReserveOutput();
  twin.ResolveOutput(token, 4096);
  EXPECT_TRUE(twin.finished());
  EXPECT_EQ(twin.finish_reason(), runtime::FinishReason::kLength);
}

}  // namespace
}  // namespace tern::scheduler
