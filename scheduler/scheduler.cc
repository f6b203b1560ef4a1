#include "scheduler/scheduler.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "runtime/base/check.h"

namespace tern::scheduler {

Scheduler::Scheduler(const SchedulerOptions& options, const runtime::KvCacheLayout& layout)
    : options_(options),
      blocks_(BlockManagerOptions{layout.num_blocks, layout.block_size, options.enable_prefix_caching}) {
  CHECK_GT(options_.max_num_seqs, 0);
  CHECK_GT(options_.max_num_batched_tokens, 0);
  CHECK_GT(options_.max_context_length, 0);
}

SequenceGroup* Scheduler::Add(SequenceGroup::Options options, std::vector<int32_t> prompt, uint64_t seed) {
  CHECK(!prompt.empty());
  const std::string id = options.request_id;
  auto group = std::make_unique<SequenceGroup>(std::move(options), next_arrival_order_++, seed);
  SequenceGroup* g = group.get();
  CHECK(groups_.try_emplace(id, std::move(group)).second) << "duplicate request id " << id;
  auto seq = std::make_unique<Sequence>(next_seq_id_++, 0, g, std::move(prompt), seed, g->sampling(),
                                        options_.eos_token_ids, options_.tokenizer);
  queues_.Push(seq.get());
  g->sequences().push_back(std::move(seq));
  return g;
}

SequenceGroup* Scheduler::Find(const std::string& request_id) const {
  auto it = groups_.find(request_id);
  return it == groups_.end() ? nullptr : it->second.get();
}

bool Scheduler::InStep(const Sequence* seq) const { return seq->planned_step() == step_; }

void Scheduler::InsertRunning(Sequence* seq) {
  auto pos = std::upper_bound(running_.begin(), running_.end(), seq,
                              [](const Sequence* a, const Sequence* b) { return ServedBefore(*a, *b); });
  running_.insert(pos, seq);
  seq->set_status(SequenceStatus::kRunning);
  queues_.SequenceStarted(seq->group()->tenant());
}

void Scheduler::RemoveRunning(Sequence* seq) {
  auto it = std::find(running_.begin(), running_.end(), seq);
  CHECK(it != running_.end()) << "sequence " << seq->seq_id() << " is not running";
  running_.erase(it);
  queues_.SequenceStopped(seq->group()->tenant());
}

int32_t Scheduler::ChunkSize(const Sequence& seq, int32_t budget) const {
  int32_t n = seq.num_uncomputed_tokens();
  if (seq.index() == 0 && seq.group()->needs_fork()) {
    // Stop before the last prompt token: the siblings fork there.
    n = std::min(n, seq.num_prompt_tokens() - 1 - seq.num_computed_tokens());
  }
  return std::max(0, std::min(n, budget));
}

void Scheduler::MaybeFork(Sequence* seq) {
  SequenceGroup* group = seq->group();
  if (seq->index() != 0 || !group->needs_fork() || seq->num_output_tokens() != 0 ||
      seq->num_computed_tokens() != seq->num_prompt_tokens() - 1) {
    return;
  }
  const int32_t n = group->sampling().n;
  for (int32_t index = static_cast<int32_t>(group->sequences().size()); index < n; ++index) {
    std::unique_ptr<Sequence> child = seq->Fork(next_seq_id_++, index, &blocks_);
    InsertRunning(child.get());
    group->sequences().push_back(std::move(child));
  }
}

void Scheduler::AddToPlan(Sequence* seq, int32_t n) {
  CHECK_GT(n, 0);
  const int32_t begin = seq->num_computed_tokens();
  runtime::SequenceStep step;
  step.seq_id = seq->seq_id();
  step.token_ids = absl::MakeConstSpan(seq->tokens()).subspan(begin, n);
  step.num_computed_tokens = begin;
  step.block_table = absl::MakeConstSpan(seq->block_table());
  step.sample = begin + n == seq->num_tokens();
  if (step.sample) {
    step.sampling = &seq->group()->sampling();
    step.sampling_state = &seq->sampling_state();
  }
  out_.plan.sequences.push_back(step);
  out_.scheduled.push_back({seq, n, step.sample});
  out_.num_batched_tokens += n;
  seq->set_planned_step(step_);
  queues_.Charge(seq->group()->tenant(), n);
}

void Scheduler::Preempt(Sequence* seq) {
  RemoveRunning(seq);
  seq->ResetComputed(&blocks_);
  seq->set_status(SequenceStatus::kPreempted);
  queues_.Push(seq);
  out_.preempted.push_back(seq->seq_id());
  ++preemptions_;
}

bool Scheduler::PreemptOne(const Sequence* except) {
  // Victims come only from behind `except` in service order: lower priority,
  // or equal priority and newer.
  for (size_t j = running_.size(); j-- > 0;) {
    Sequence* victim = running_[j];
    if (victim == except) return false;
    if (InStep(victim)) continue;
    Preempt(victim);
    return true;
  }
  return false;
}

void Scheduler::ScheduleRunning(bool decodes_only, int32_t* budget) {
  for (size_t i = 0; i < running_.size(); ++i) {
    if (*budget == 0 || int32_t(out_.scheduled.size()) >= options_.max_num_seqs) return;
    Sequence* seq = running_[i];
    if (InStep(seq)) continue;
    MaybeFork(seq);
    if (decodes_only && seq->num_uncomputed_tokens() != 1) continue;
    const int32_t n = ChunkSize(*seq, *budget);
    CHECK_GT(n, 0) << "running sequence " << seq->seq_id() << " has nothing to compute";
    const int32_t begin = seq->num_computed_tokens();
    bool ok;
    while (!(ok = blocks_.PrepareWrite(&seq->block_table(), begin, begin + n, &out_.plan.block_copies))) {
      if (!PreemptOne(seq)) break;
    }
    if (!ok) {
      Preempt(seq);  // removes running_[i]
      --i;
      continue;
    }
    AddToPlan(seq, n);
    *budget -= n;
  }
}

void Scheduler::ScheduleWaiting(int32_t* budget) {
  const auto eligible = [this](const Sequence& seq) {
    return seq.group()->admitted() || queues_.MayAdmit(seq.group()->tenant());
  };
  while (*budget > 0 && int32_t(out_.scheduled.size()) < options_.max_num_seqs) {
    Sequence* seq = queues_.PickNext(eligible);
    if (seq == nullptr) return;
    SequenceGroup* group = seq->group();
    const int32_t new_seqs = group->admitted() ? 1 : group->sampling().n;
    if (!running_.empty() && int32_t(running_.size()) + new_seqs > options_.max_num_seqs) return;

    if (seq->block_table().empty() && seq->num_computed_tokens() == 0) {
      seq->UpdateHashes(blocks_);
      const int32_t bs = blocks_.block_size();
      const int32_t hit = blocks_.MatchPrefix(seq->salt(), seq->block_hashes(), seq->tokens(),
                                              seq->num_tokens() / bs, &seq->block_table());
      // Keep at least the last token to compute, so the step has logits.
      seq->SetComputedFromCache(std::min(hit * bs, seq->num_tokens() - 1));
    }
    const int32_t n = ChunkSize(*seq, *budget);
    const int32_t begin = seq->num_computed_tokens();
    if (n > 0 && !blocks_.PrepareWrite(&seq->block_table(), begin, begin + n, &out_.plan.block_copies)) {
      seq->ResetComputed(&blocks_);  // gives the prefix hits back
      return;
    }
    queues_.Remove(seq);
    InsertRunning(seq);
    if (!group->admitted()) {
      group->set_admitted();
      group->set_cached_prompt_tokens(std::min(begin, seq->num_prompt_tokens()));
      ++num_admitted_;
      queues_.RequestAdmitted(group->tenant());
    }
    if (n == 0) {
      // Sequence 0 of an n > 1 request whose prompt but the last token came
      // from the cache: fork now; the choices run from the next step.
      seq->set_planned_step(step_);
      MaybeFork(seq);
      continue;
    }
    AddToPlan(seq, n);
    *budget -= n;
  }
}

const ScheduleOutput& Scheduler::Schedule() {
  CHECK(!step_pending_) << "Schedule called twice without Apply";
  out_.plan.sequences.clear();
  out_.plan.block_copies.clear();
  out_.scheduled.clear();
  out_.preempted.clear();
  out_.num_batched_tokens = 0;
  ++step_;
  int32_t budget = options_.max_num_batched_tokens;
  ScheduleRunning(/*decodes_only=*/true, &budget);
  ScheduleRunning(/*decodes_only=*/false, &budget);
  // After a preemption the freed blocks go to the running sequences next
  // step, not to newcomers (which would thrash).
  if (out_.preempted.empty()) ScheduleWaiting(&budget);
  step_pending_ = true;
  return out_;
}

void Scheduler::DiscardStep() {
  CHECK(step_pending_);
  step_pending_ = false;
}

absl::StatusOr<StepOutcome> Scheduler::Apply(const runtime::StepResult& result) {
  CHECK(step_pending_) << "Apply without Schedule";
  size_t num_samples = 0;
  for (const ScheduledSequence& s : out_.scheduled) {
    if (!s.sample) continue;
    if (num_samples >= result.outputs.size() || result.outputs[num_samples].seq_id != s.seq->seq_id()) {
      DiscardStep();
      return absl::InternalError(absl::StrCat("step result does not match the plan at sampled sequence ",
                                              num_samples, " (seq ", s.seq->seq_id(), ")"));
    }
    ++num_samples;
  }
  if (num_samples != result.outputs.size()) {
    DiscardStep();
    return absl::InternalError(
        absl::StrCat("step result has ", result.outputs.size(), " outputs for ", num_samples, " samples"));
  }
  step_pending_ = false;

  StepOutcome outcome;
  std::vector<SequenceGroup*> touched;
  std::vector<std::pair<std::string, absl::Status>> failures;  // request id, first row error
  size_t k = 0;
  for (const ScheduledSequence& s : out_.scheduled) {
    Sequence* seq = s.seq;
    const int32_t begin = seq->num_computed_tokens();
    prompt_tokens_ += std::max(0, std::min(begin + s.num_tokens, seq->num_prompt_tokens()) - begin);
    seq->AdvanceComputed(s.num_tokens, &blocks_);
    if (!s.sample) continue;
    const absl::StatusOr<runtime::SampledToken>& sampled = result.outputs[k++].token;
    if (!sampled.ok()) {
      SequenceGroup* group = seq->group();
      const bool listed = std::any_of(failures.begin(), failures.end(),
                                      [&](const auto& f) { return f.first == group->request_id(); });
      if (!listed) failures.emplace_back(group->request_id(), sampled.status());
      continue;
    }
    seq->AppendOutput(*sampled, options_.max_context_length);
    ++generation_tokens_;
    if (seq->group()->output_step() != step_) {
      seq->group()->set_output_step(step_);
      touched.push_back(seq->group());
    }
    if (seq->finished()) {
      RemoveRunning(seq);
      seq->ResetComputed(&blocks_);
    }
  }
  for (SequenceGroup* group : touched) {
    const bool failed = std::any_of(failures.begin(), failures.end(),
                                    [&](const auto& f) { return f.first == group->request_id(); });
    if (failed) continue;
    if (group->AllFinished()) {
      outcome.finished.push_back(Detach(group->request_id()));
    } else {
      outcome.updated.push_back(group);
    }
  }
  for (auto& [request_id, status] : failures) {
    outcome.failed.push_back({Abort(request_id), std::move(status)});
  }
  return outcome;
}

std::unique_ptr<SequenceGroup> Scheduler::Detach(const std::string& request_id) {
  auto it = groups_.find(request_id);
  CHECK(it != groups_.end());
  std::unique_ptr<SequenceGroup> group = std::move(it->second);
  groups_.erase(it);
  if (group->admitted()) {
    --num_admitted_;
    queues_.RequestFinished(group->tenant());
  }
  return group;
}

std::unique_ptr<SequenceGroup> Scheduler::Abort(const std::string& request_id) {
  CHECK(!step_pending_) << "Abort between Schedule and Apply";
  SequenceGroup* group = Find(request_id);
  if (group == nullptr) return nullptr;
  for (const auto& seq : group->sequences()) {
    switch (seq->status()) {
      case SequenceStatus::kRunning:
        RemoveRunning(seq.get());
        break;
      case SequenceStatus::kWaiting:
      case SequenceStatus::kPreempted:
        CHECK(queues_.Remove(seq.get()));
        break;
      case SequenceStatus::kFinished:
        break;
    }
    seq->ResetComputed(&blocks_);
    seq->Abort();
  }
  return Detach(request_id);
}

std::vector<std::unique_ptr<SequenceGroup>> Scheduler::AbortAll() {
  std::vector<std::string> ids;
  for (const auto& [id, group] : groups_) ids.push_back(id);
  std::vector<std::unique_ptr<SequenceGroup>> aborted;
  for (const std::string& id : ids) aborted.push_back(Abort(id));
  return aborted;
}

SchedulerStats Scheduler::stats() const {
  SchedulerStats s;
  s.running = num_running();
  s.waiting = static_cast<int32_t>(num_waiting());
  s.steps = step_;
  s.preemptions = preemptions_;
  s.prompt_tokens = prompt_tokens_;
  s.generation_tokens = generation_tokens_;
  s.blocks = blocks_.stats();
  return s;
}

}  // namespace tern::scheduler
