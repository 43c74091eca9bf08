//! Evaluates a knowledge base on a labelled set of questions: top-1 accuracy, and precision
//! and recall of the bot's answers at a confidence threshold.
//!
//!   cargo run --release -p storage-bridge --bin kb-eval -- [--kb FAQ.toml] [--eval SET.tsv] [--threshold 0.35]
//!
//! Without arguments it evaluates the shipped example (`storage-bridge/ai/faq.toml` against
//! `storage-bridge/ai/faq-eval.tsv`). The set has one question per line: `ENTRY_ID<TAB>text`,
//! `none` for a question the knowledge base should not answer.

use anyhow::Context;
use clap::Parser;
use std::path::PathBuf;
use storage_bridge::ai::kb::{self, KnowledgeBase};

#[derive(Parser)]
#[command(
    name = "kb-eval",
    about = "Evaluate a knowledge base on labelled questions"
)]
struct Args {
    /// The knowledge base (TOML); default: the shipped example.
    #[arg(long)]
    kb: Option<PathBuf>,
    /// The labelled questions (TSV); default: the shipped example set.
    #[arg(long)]
    eval: Option<PathBuf>,
    /// Confidence at or above which the bot answers.
    #[arg(long, default_value_t = kb::DEFAULT_THRESHOLD)]
    threshold: f32,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let base = match &a.kb {
        Some(p) => KnowledgeBase::load(p).with_context(|| format!("loading {}", p.display()))?,
        None => KnowledgeBase::example(),
    };
    let set = match &a.eval {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?
        }
        None => kb::EXAMPLE_EVAL.to_owned(),
    };
    let _ = base.best("warm up"); // loads jieba's dictionary once
    let start = std::time::Instant::now();
    let e = kb::evaluate(&base, &set, a.threshold);
    let per_question =
        start.elapsed().as_secs_f64() * 1e6 / (e.in_scope + e.out_of_scope).max(1) as f64;
    println!(
        "{} entries; {} questions in scope, {} out of scope",
        base.len(),
        e.in_scope,
        e.out_of_scope
    );
    println!(
        "top-1 accuracy: {}/{} = {:.3}",
        e.top1_correct,
        e.in_scope,
        e.top1_accuracy()
    );
    println!(
        "at threshold {}: answered {}, precision {:.3}, recall {:.3}",
        a.threshold,
        e.answered,
        e.precision(),
        e.recall()
    );
    println!("{per_question:.0} us per question (retrieval and scoring, one thread)");
    for m in &e.mistakes {
        println!("  {m}");
    }
    Ok(())
}
