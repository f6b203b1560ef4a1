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
  CHECK_EQ(num_kv_groups(), layout.num_groups) << "the KV-cache groups do not match the cache layout";
}

int32_t Scheduler::num_kv_groups() const {
  return options_.kv_groups != nullptr ? options_.kv_groups->num_groups() : 1;
}

SequenceGroup* Scheduler::Add(SequenceGroup::Options options, std::vector<int32_t> prompt, uint64_t seed) {
  CHECK(!prompt.empty());
  const int32_t n = options.sampling.n;
  CHECK_GE(n, 1);
  std::vector<BranchSpec> branches;
  std::vector<int32_t> prefix;
  if (n == 1) {
    branches.push_back({0, std::move(prompt), options.sampling});
  } else {
    // The choices share all but the last prompt token; each computes that
    // token itself, so each samples its first output from its own logits.
    prefix.assign(prompt.begin(), prompt.end() - 1);
    for (int32_t i = 0; i < n; ++i) branches.push_back({i, {prompt.back()}, options.sampling});
  }
  return AddGroup(std::move(options), std::move(prefix), std::move(branches), seed);
}

SequenceGroup* Scheduler::AddGroup(SequenceGroup::Options options, std::vector<int32_t> shared_prefix,
                                   std::vector<BranchSpec> branches, uint64_t seed) {
  CHECK(!branches.empty());
  const RequestKey key{options.tenant->name, options.request_id};
  const std::string& id = key.id;
  const bool continuation = options.continuation;
  auto group = std::make_unique<SequenceGroup>(std::move(options), next_arrival_order_++, seed,
                                               static_cast<int32_t>(shared_prefix.size()));
  SequenceGroup* g = group.get();
  CHECK(groups_.try_emplace(key, std::move(group)).second)
      << "duplicate request id " << id << " of tenant " << key.tenant;
  for (BranchSpec& branch : branches) {
    CHECK(!branch.suffix.empty()) << "branch " << branch.index << " of " << id << " has no tokens of its own";
    std::vector<int32_t> prompt;
    prompt.reserve(shared_prefix.size() + branch.suffix.size());
    prompt.insert(prompt.end(), shared_prefix.begin(), shared_prefix.end());
    prompt.insert(prompt.end(), branch.suffix.begin(), branch.suffix.end());
    auto seq = std::make_unique<Sequence>(next_seq_id_++, branch.index, g, std::move(prompt), seed, branch.sampling,
                                          options_.eos_token_ids, options_.tokenizer, num_kv_groups());
    if (g->sequences().empty()) {
      queues_.Push(seq.get());
    } else {
      seq->set_status(SequenceStatus::kForkPending);
    }
    g->sequences().push_back(std::move(seq));
  }
  g->set_needs_fork(g->sequences().size() > 1);
  if (continuation) {
    g->set_admitted();
    ++num_admitted_;
    queues_.RequestAdmitted(g->tenant());
  }
  return g;
}

SequenceGroup* Scheduler::Find(const RequestKey& key) const {
  auto it = groups_.find(key);
  return it == groups_.end() ? nullptr : it->second.get();
}

bool Scheduler::InStep(const Sequence* seq) const {
  return seq->planned_step() == step_ || seq->group()->planned_step() == step_;
}

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
  const SequenceGroup& group = *seq.group();
  if (group.needs_fork() && &seq == group.carrier()) {
    // Stop at the shared prefix: the other sequences attach there.
    n = std::min(n, group.shared_prefix_len() - seq.num_computed_tokens());
  }
  return std::max(0, std::min(n, budget));
}

void Scheduler::MaybeFork(Sequence* seq) {
  SequenceGroup* group = seq->group();
  if (!group->needs_fork() || seq != group->carrier() || seq->num_computed_tokens() != group->shared_prefix_len()) {
    return;
  }
  for (const auto& other : group->sequences()) {
    if (other->status() != SequenceStatus::kForkPending) continue;
    other->AttachSharedPrefix(*seq, group->shared_prefix_len(), &blocks_);
    InsertRunning(other.get());
    ++planning_->num_started;
  }
  group->set_needs_fork(false);
}

void Scheduler::AddToPlan(Sequence* seq, int32_t n) {
  AddStep(planning_, seq, seq->num_computed_tokens(), n, /*input_from_last_sample=*/false);
}

void Scheduler::AddStep(ScheduleOutput* out, Sequence* seq, int32_t begin, int32_t n, bool input_from_last_sample) {
  CHECK_GT(n, 0);
  runtime::SequenceStep step;
  step.seq_id = seq->seq_id();
  step.token_ids = absl::MakeConstSpan(seq->tokens()).subspan(begin, n);
  step.input_from_last_sample = input_from_last_sample;
  step.num_computed_tokens = begin;
  step.block_tables = absl::MakeConstSpan(seq->block_tables());
  step.sample = begin + n == seq->num_tokens();
  if (step.sample) {
    step.sampling = &seq->sampling_params();
    step.sampling_state = &seq->sampling_state();
  }
  out->plan.sequences.push_back(step);
  out->scheduled.push_back({seq, seq->seq_id(), n, step.sample, false});
  out->num_batched_tokens += n;
  seq->set_planned_step(step_);
  queues_.Charge(seq->group()->tenant(), n);
}

void Scheduler::PreemptGroup(SequenceGroup* group) {
  for (const auto& seq : group->sequences()) {
    if (seq->status() != SequenceStatus::kRunning) continue;
    RemoveRunning(seq.get());
    seq->ResetComputed(&blocks_);
    out_.preempted.push_back(seq->seq_id());
    ++preemptions_;
  }
  Sequence* carrier = group->carrier();
  for (const auto& seq : group->sequences()) {
    if (seq->finished() || seq->status() == SequenceStatus::kWaiting || seq->status() == SequenceStatus::kPreempted) {
      continue;
    }
    if (seq.get() == carrier) {
      seq->set_status(SequenceStatus::kPreempted);
      queues_.Push(seq.get());
    } else {
      seq->set_status(SequenceStatus::kForkPending);
    }
  }
  group->set_needs_fork(group->num_live() > 1);
}

bool Scheduler::PreemptOne(const Sequence* except) {
  // Victims come only from behind `except`'s group in service order: lower
  // priority, or equal priority and newer. A victim is a whole group, and
  // only one with nothing in this step.
  for (size_t j = running_.size(); j-- > 0;) {
    Sequence* victim = running_[j];
    if (victim->group() == except->group()) return false;
    if (InStep(victim)) continue;
    const SequenceGroup* group = victim->group();
    const bool group_in_step = std::any_of(running_.begin(), running_.end(), [&](const Sequence* s) {
      return s->group() == group && InStep(s);
    });
    if (group_in_step) continue;
    PreemptGroup(victim->group());
    return true;
  }
  return false;
}

void Scheduler::ScheduleGang(SequenceGroup* group, int32_t* budget) {
  group->set_planned_step(step_);
  std::vector<Sequence*> members;
  for (Sequence* seq : running_) {
    if (seq->group() == group) members.push_back(seq);
  }
  // All members get their blocks or none does: a member left without one
  // would stall the whole answer, so then the gang waits whole.
  const size_t copies_mark = out_.plan.block_copies.size();
  std::vector<std::pair<Sequence*, int32_t>> planned;
  int32_t left = *budget;
  int32_t seats = options_.max_num_seqs - static_cast<int32_t>(out_.scheduled.size());
  for (Sequence* member : members) {
    if (left == 0 || seats == 0) break;
    const int32_t n = ChunkSize(*member, left);
    if (n == 0) continue;
    const int32_t begin = member->num_computed_tokens();
    bool ok;
    while (!(ok = blocks_.PrepareWrite(&member->block_tables(), begin, begin + n, &out_.plan.block_copies))) {
      if (!PreemptOne(member)) break;
    }
    if (!ok) {
      out_.plan.block_copies.resize(copies_mark);
      PreemptGroup(group);
      return;
    }
    planned.emplace_back(member, n);
    left -= n;
    --seats;
  }
  for (const auto& [member, n] : planned) AddToPlan(member, n);
  *budget = left;
}

void Scheduler::ScheduleRunning(bool decodes_only, int32_t* budget) {
  for (size_t i = 0; i < running_.size(); ++i) {
    if (*budget == 0 || int32_t(out_.scheduled.size()) >= options_.max_num_seqs) return;
    Sequence* seq = running_[i];
    if (InStep(seq)) continue;
    MaybeFork(seq);
    SequenceGroup* group = seq->group();
    const bool gang = i + 1 < running_.size() && running_[i + 1]->group() == group;
    if (gang) {
      // A gang runs as a unit in whichever pass reaches it first. Its
      // members are adjacent in running_ (same priority and arrival).
      ScheduleGang(group, budget);
      if (seq->status() == SequenceStatus::kRunning) {
        while (i + 1 < running_.size() && running_[i + 1]->group() == group) ++i;
      } else {
        --i;  // preempted: its members left running_ from position i
      }
      continue;
    }
    if (decodes_only && seq->num_uncomputed_tokens() != 1) continue;
    const int32_t n = ChunkSize(*seq, *budget);
    CHECK_GT(n, 0) << "running sequence " << seq->seq_id() << " has nothing to compute";
    const int32_t begin = seq->num_computed_tokens();
    bool ok;
    while (!(ok = blocks_.PrepareWrite(&seq->block_tables(), begin, begin + n, &out_.plan.block_copies))) {
      if (!PreemptOne(seq)) break;
    }
    if (!ok) {
      PreemptGroup(group);  // removes running_[i]
      --i;
      continue;
    }
    AddToPlan(seq, n);
    *budget -= n;
  }
}

int32_t Scheduler::GroupPeak(int32_t group, int32_t tokens, int32_t dense) const {
  const runtime::KvRetention* retention =
      options_.kv_groups != nullptr ? options_.kv_groups->group_retention(group) : nullptr;
  if (retention == nullptr) return dense;
  // With KV retention a sequence never holds more than its peak: its sinks,
  // its band and one step's new blocks.
  const int64_t peak = retention->PeakBlocks(tokens, blocks_.block_size(), options_.max_num_batched_tokens);
  return static_cast<int32_t>(std::min<int64_t>(dense, peak));
}

int32_t Scheduler::BlocksToAdmit(const SequenceGroup& group) const {
  const Sequence* carrier = group.carrier();
  const int32_t bs = blocks_.block_size();
  int32_t need = 0;
  for (int32_t g = 0; g < num_kv_groups(); ++g) {
    const int32_t dense =
        blocks_.BlocksNeededToWrite(carrier->block_table(g), carrier->num_computed_tokens(), carrier->num_tokens());
    need += GroupPeak(g, carrier->num_tokens(), dense);
  }
  if (!group.needs_fork()) return need;
  for (const auto& seq : group.sequences()) {
    if (seq.get() == carrier || seq->finished()) continue;
    const int32_t own = (seq->num_tokens() + bs - 1) / bs - group.shared_prefix_len() / bs;
    for (int32_t g = 0; g < num_kv_groups(); ++g) need += GroupPeak(g, seq->num_tokens(), own);
  }
  return need;
}

void Scheduler::ScheduleWaiting(int32_t* budget) {
  const auto eligible = [this](const Sequence& seq) {
    return seq.group()->admitted() || queues_.MayAdmit(seq.group()->tenant());
  };
  while (*budget > 0 && int32_t(planning_->scheduled.size()) < options_.max_num_seqs) {
    Sequence* seq = queues_.PickNext(eligible);
    if (seq == nullptr) return;
    SequenceGroup* group = seq->group();
    const int32_t new_seqs = group->needs_fork() ? group->num_live() : 1;
    if (!running_.empty() && int32_t(running_.size()) + new_seqs > options_.max_num_seqs) return;

    if (!seq->holds_blocks() && seq->num_computed_tokens() == 0) {
      seq->UpdateHashes(blocks_);
      const int32_t bs = blocks_.block_size();
      // A carrier takes cached blocks only up to the shared prefix, where
      // the others attach.
      const int32_t max_blocks = group->needs_fork() ? group->shared_prefix_len() / bs : seq->num_tokens() / bs;
      const int32_t hit =
          blocks_.MatchPrefix(seq->salt(), seq->block_hashes(), seq->tokens(), max_blocks, &seq->block_tables());
      // Keep at least the last token to compute, so the step has logits.
      seq->SetComputedFromCache(std::min(hit * bs, seq->num_tokens() - 1));
      // Hit blocks that no query of this sequence reads go back at once
      // (they stay cached).
      if (options_.kv_groups != nullptr) seq->ReleaseUnread(*options_.kv_groups, &blocks_);
    }
    const int32_t n = ChunkSize(*seq, *budget);
    const int32_t begin = seq->num_computed_tokens();
    // A gang starts only when the blocks of all its prompts are free, so
    // that it does not start and then preempt itself.
    const bool gang = group->needs_fork() && group->num_live() > 1;
    if ((gang && BlocksToAdmit(*group) > blocks_.num_free()) ||
        (n > 0 && !blocks_.PrepareWrite(&seq->block_tables(), begin, begin + n, &planning_->plan.block_copies))) {
      seq->ResetComputed(&blocks_);  // gives the prefix hits back
      return;
    }
    queues_.Remove(seq);
    InsertRunning(seq);
    ++planning_->num_started;
    if (!group->admitted()) {
      group->set_admitted();
      group->set_cached_prompt_tokens(std::min(begin, seq->num_prompt_tokens()));
      ++num_admitted_;
      queues_.RequestAdmitted(group->tenant());
    }
    if (n == 0) {
      // A carrier whose shared prefix came from the cache: the others attach
      // now and the group runs from the next step.
      seq->set_planned_step(step_);
      group->set_planned_step(step_);
      MaybeFork(seq);
      continue;
    }
    AddToPlan(seq, n);
    *budget -= n;
  }
}

const ScheduleOutput& Scheduler::Schedule() {
  CHECK(!step_pending_) << "Schedule called twice without Apply";
  out_ = ScheduleOutput{};
  out_.step = ++step_;
  int32_t budget = options_.max_num_batched_tokens;
  ScheduleRunning(/*decodes_only=*/true, &budget);
  ScheduleRunning(/*decodes_only=*/false, &budget);
  // After a preemption the freed blocks go to the running sequences next
  // step, not to newcomers (which would thrash).
  if (out_.preempted.empty()) ScheduleWaiting(&budget);
  step_pending_ = true;
  return out_;
}

bool Scheduler::CanPlanAhead(const ScheduledSequence& s, bool* finishes) const {
  *finishes = false;
  CHECK(s.sample && !s.dropped);
  const Sequence& seq = *s.seq;
  if (seq.group()->needs_fork() || seq.has_reserved_output()) return false;
  // Its output from the pending step is its last: by max_tokens, or at the
  // context limit.
  const std::optional<int32_t>& max_tokens = seq.sampling_params().max_tokens;
  *finishes = (max_tokens.has_value() && seq.num_output_tokens() + 1 >= *max_tokens) ||
              seq.num_tokens() + 1 >= options_.max_context_length;
  return true;
}

const ScheduleOutput* Scheduler::ScheduleAhead() {
  CHECK(step_pending_ && !ahead_pending_) << "ScheduleAhead needs one pending step and none planned ahead";
  // Every running sequence is in the pending step: one that is not (no
  // budget or seat was left for it) is planned in step, so none waits
  // behind steps planned ahead.
  size_t in_step = 0;
  for (const ScheduledSequence& s : out_.scheduled) in_step += s.dropped ? 0 : 1;
  if (in_step != running_.size()) return nullptr;
  std::vector<Sequence*> continuing;  // decoding: their next position
  std::vector<std::pair<Sequence*, int32_t>> prefilling;  // in a prompt: where their next chunk begins
  for (const ScheduledSequence& s : out_.scheduled) {
    if (s.dropped) continue;
    if (!s.sample) {
      if (s.seq->group()->needs_fork()) return nullptr;  // a carrier's prefix: forks are planned in step
      prefilling.emplace_back(s.seq, s.seq->num_computed_tokens() + s.num_tokens);
      continue;
    }
    bool finishes = false;
    if (!CanPlanAhead(s, &finishes)) return nullptr;
    if (!finishes) continuing.push_back(s.seq);
  }
  if ((continuing.empty() && prefilling.empty()) ||
      int32_t(continuing.size()) > options_.max_num_batched_tokens) {
    return nullptr;
  }
  // A next position may open a block (or copy a shared one) in every group.
  if (blocks_.num_free() < int32_t(continuing.size()) * num_kv_groups()) return nullptr;
  ahead_ = ScheduleOutput{};
  ahead_.step = ++step_;
  ahead_needs_counts_ = false;
  ahead_counted_ = false;
  for (Sequence* seq : continuing) {
    ahead_needs_counts_ = ahead_needs_counts_ || seq->sampling_state().tracks_output_counts();
    // The pending step computes every uncomputed token and samples the next.
    const int32_t next = seq->num_tokens();
    seq->ReserveOutput();
    CHECK(blocks_.PrepareWrite(&seq->block_tables(), next, next + 1, &ahead_.plan.block_copies))
        << "no block for sequence " << seq->seq_id() << " after counting free blocks";
    AddStep(&ahead_, seq, next, 1, /*input_from_last_sample=*/true);
  }
  int32_t budget = options_.max_num_batched_tokens - ahead_.num_batched_tokens;
  // Prompts in chunks go on with what the decodes leave, in order, as a
  // plain step gives it to them; one that gets no budget or no blocks waits
  // for a plain step (it is then running outside the step planned ahead).
  for (const auto& [seq, begin] : prefilling) {
    if (budget == 0) break;
    const int32_t n = std::min(seq->num_tokens() - begin, budget);
    if (n <= 0) continue;
    if (blocks_.BlocksNeededToWrite(seq->block_tables(), begin, begin + n) > blocks_.num_free()) break;
    CHECK(blocks_.PrepareWrite(&seq->block_tables(), begin, begin + n, &ahead_.plan.block_copies))
        << "no block for sequence " << seq->seq_id() << " after counting free blocks";
    AddStep(&ahead_, seq, begin, n, /*input_from_last_sample=*/false);
    budget -= n;
  }
  // Waiting requests start in the step ahead as they would in step, with
  // what the budget and the seats leave, but never by preempting.
  planning_ = &ahead_;
  ScheduleWaiting(&budget);
  planning_ = &out_;
  ahead_pending_ = true;
  return &ahead_;
}

void Scheduler::CountCollectedSamples(const runtime::StepResult& collected) {
  CHECK(ahead_pending_) << "no plan ahead";
  ahead_counted_ = true;
  if (!ahead_needs_counts_) return;
  absl::flat_hash_map<int64_t, int32_t> sampled;
  for (const runtime::SequenceOutput& out : collected.outputs) {
    if (out.token.ok()) sampled[out.seq_id] = out.token->token_id;
  }
  for (size_t i = 0; i < ahead_.scheduled.size(); ++i) {
    if (!ahead_.plan.sequences[i].input_from_last_sample) continue;
    Sequence* seq = ahead_.scheduled[i].seq;
    // A row that failed fails its request when the step is applied.
    if (auto it = sampled.find(seq->seq_id()); it != sampled.end()) seq->CountReservedOutput(it->second);
  }
}

void Scheduler::DiscardStep() {
  CHECK(step_pending_);
  step_pending_ = false;
  DiscardAhead();
}

void Scheduler::DiscardAhead() {
  if (!ahead_pending_) return;
  for (size_t i = 0; i < ahead_.scheduled.size(); ++i) {
    const ScheduledSequence& s = ahead_.scheduled[i];
    if (s.dropped) continue;
    if (ahead_.plan.sequences[i].input_from_last_sample) {
      s.seq->DropReservedOutput();
    } else {
      // A prompt started or continued in the plan ahead: its blocks may wait
      // for copies that will not run. It stays running and computes its
      // prompt from the start (a sequence of the failed step is aborted).
      s.seq->ResetComputed(&blocks_);
    }
  }
  ahead_pending_ = false;
}

std::vector<std::unique_ptr<SequenceGroup>> Scheduler::AbortStep() {
  CHECK(step_pending_);
  std::vector<RequestKey> keys;
  const auto add = [&keys](const Sequence* seq) {
    const RequestKey& key = seq->group()->key();
    if (std::find(keys.begin(), keys.end(), key) == keys.end()) keys.push_back(key);
  };
  for (const ScheduledSequence& s : out_.scheduled) {
    if (!s.dropped) add(s.seq);
  }
  // A plan ahead holds only sequences of the pending step; its reservations
  // go back before they are aborted.
  DiscardAhead();
  // A copy's destination may hold garbage now; its sequence writes in this
  // step, but check the tables rather than rely on that.
  for (const auto& [src, dst] : out_.plan.block_copies) {
    for (const Sequence* seq : running_) {
      for (const BlockTable& table : seq->block_tables()) {
        if (std::find(table.begin(), table.end(), dst) != table.end()) add(seq);
      }
    }
  }
  step_pending_ = false;
  std::vector<std::unique_ptr<SequenceGroup>> aborted;
  for (const RequestKey& key : keys) aborted.push_back(Abort(key));
  return aborted;
}

absl::StatusOr<StepOutcome> Scheduler::Apply(const runtime::StepResult& result) {
  CHECK(step_pending_) << "Apply without Schedule";
  CHECK(!ahead_pending_ || !ahead_needs_counts_ || ahead_counted_)
      << "a plan ahead with penalty counts was launched before CountCollectedSamples";
  size_t num_samples = 0;
  for (const ScheduledSequence& s : out_.scheduled) {
    if (!s.sample) continue;
    if (num_samples >= result.outputs.size() || result.outputs[num_samples].seq_id != s.seq_id) {
      DiscardStep();
      return absl::InternalError(absl::StrCat("step result does not match the plan at sampled sequence ",
                                              num_samples, " (seq ", s.seq_id, ")"));
    }
    ++num_samples;
  }
  if (num_samples != result.outputs.size()) {
    DiscardStep();
    return absl::InternalError(
        absl::StrCat("step result has ", result.outputs.size(), " outputs for ", num_samples, " samples"));
  }
  step_pending_ = false;
  const int64_t step = out_.step;

  StepOutcome outcome;
  std::vector<SequenceGroup*> touched;
  std::vector<std::pair<SequenceGroup*, absl::Status>> failures;  // request, first row error
  size_t k = 0;
  for (const ScheduledSequence& s : out_.scheduled) {
    if (s.dropped) {
      // Ended after this step was planned ahead: its row is discarded.
      if (s.sample) ++k;
      continue;
    }
    Sequence* seq = s.seq;
    const int32_t begin = seq->num_computed_tokens();
    prompt_tokens_ += std::max(0, std::min(begin + s.num_tokens, seq->num_prompt_tokens()) - begin);
    seq->AdvanceComputed(s.num_tokens, &blocks_);
    if (options_.kv_groups != nullptr) seq->ReleaseUnread(*options_.kv_groups, &blocks_);
    if (!s.sample) continue;
    const absl::StatusOr<runtime::SampledToken>& sampled = result.outputs[k++].token;
    if (!sampled.ok()) {
      SequenceGroup* group = seq->group();
      const bool listed =
          std::any_of(failures.begin(), failures.end(), [&](const auto& f) { return f.first == group; });
      if (!listed) failures.emplace_back(group, sampled.status());
      continue;
    }
    if (seq->has_reserved_output()) {
      seq->ResolveOutput(*sampled, options_.max_context_length);  // the step ahead already computes it
    } else {
      seq->AppendOutput(*sampled, options_.max_context_length);
    }
    ++generation_tokens_;
    if (seq->group()->output_step() != step) {
      seq->group()->set_output_step(step);
      touched.push_back(seq->group());
    }
    if (seq->finished()) {
      RemoveRunning(seq);
      seq->ResetComputed(&blocks_);
    }
  }
  for (SequenceGroup* group : touched) {
    const bool failed =
        std::any_of(failures.begin(), failures.end(), [&](const auto& f) { return f.first == group; });
    if (failed) continue;
    if (group->AllFinished()) {
      outcome.finished.push_back(Detach(group->key()));
    } else {
      outcome.updated.push_back(group);
    }
  }
  for (auto& [group, status] : failures) {
    outcome.failed.push_back({Abort(group->key()), std::move(status)});
  }
  if (ahead_pending_) {
    // The plan ahead becomes the pending step, less the sequences that ended.
    for (ScheduledSequence& s : ahead_.scheduled) {
      if (s.seq->finished()) {
        s.dropped = true;
        s.seq = nullptr;
      }
    }
    out_ = std::move(ahead_);
    ahead_ = ScheduleOutput{};
    ahead_pending_ = false;
    step_pending_ = true;
  }
  return outcome;
}

std::unique_ptr<SequenceGroup> Scheduler::Detach(const RequestKey& key) {
  auto it = groups_.find(key);
  CHECK(it != groups_.end());
  std::unique_ptr<SequenceGroup> group = std::move(it->second);
  groups_.erase(it);
  if (group->admitted()) {
    --num_admitted_;
    queues_.RequestFinished(group->tenant());
  }
  return group;
}

std::unique_ptr<SequenceGroup> Scheduler::Abort(const RequestKey& key) {
  CHECK(!step_pending_) << "Abort between Schedule and Apply";
  SequenceGroup* group = Find(key);
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
      case SequenceStatus::kForkPending:
      case SequenceStatus::kFinished:
        break;
    }
    seq->ResetComputed(&blocks_);
    seq->Abort();
  }
  return Detach(key);
}

std::vector<std::unique_ptr<SequenceGroup>> Scheduler::AbortAll() {
  std::vector<RequestKey> keys;
  for (const auto& [key, group] : groups_) keys.push_back(key);
  std::vector<std::unique_ptr<SequenceGroup>> aborted;
  for (const RequestKey& key : keys) aborted.push_back(Abort(key));
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
