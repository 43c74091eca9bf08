//! The knowledge-base plugin: FAQ entries (question variants + answer) from a TOML file,
//! retrieved with `tantivy` over tokens from `jieba-rs` (Chinese word segmentation) and the
//! Snowball English stemmer; the bot answers only above a confidence threshold.
//!
//! tantivy ranks the variants (BM25) and proposes candidates; the confidence of a candidate
//! is the IDF-weighted overlap of its tokens with the message's (Dice: twice the shared
//! weight over both sides' weight), in [0, 1], so a message that shares one common word with
//! a long question does not pass. The knowledge base can be reloaded without a restart
//! ([`KbPlugin::reload`]): readers keep the one they started with.

use super::plugin::{ready, Decision, Plugin, PluginFuture, Turn};
use jieba_rs::Jieba;
use rust_stemmers::{Algorithm, Stemmer};
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, OnceLock, RwLock};
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TantivyDocument, TextFieldIndexing, TextOptions, Value,
    INDEXED, STORED,
};
use tantivy::tokenizer::{TextAnalyzer, WhitespaceTokenizer};
use tantivy::{doc, Index, IndexReader, Term};

/// The example knowledge base and its labelled evaluation set.
pub const EXAMPLE_KB: &str = include_str!("../../ai/faq.toml");
pub const EXAMPLE_EVAL: &str = include_str!("../../ai/faq-eval.tsv");

/// The confidence below which the bot stays silent: on the example set, precision 0.97 and
/// recall 0.88 (0.4: 1.0 and 0.75; chosen on that same set, so optimistic).
pub const DEFAULT_THRESHOLD: f32 = 0.35;

/// Candidates taken from tantivy before the confidence re-ranking.
const CANDIDATES: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum KbError {
    #[error("knowledge base: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("knowledge base: {0}")]
    Io(#[from] std::io::Error),
    #[error("knowledge base index: {0}")]
    Index(#[from] tantivy::TantivyError),
    #[error("knowledge base: entry {0:?} has no questions or no answer")]
    Incomplete(String),
    #[error("knowledge base: entry id {0:?} appears twice")]
    Duplicate(String),
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub id: String,
    pub questions: Vec<String>,
    pub answer: String,
}

#[derive(Deserialize)]
struct KbFile {
    #[serde(rename = "entry", default)]
    entries: Vec<Entry>,
}

/// The tokenizers, built once per process (jieba's dictionary takes ~100 ms to load).
struct Tokenizers {
    jieba: Jieba,
    stemmer: Stemmer,
}

fn tokenizers() -> &'static Tokenizers {
    static T: OnceLock<Tokenizers> = OnceLock::new();
    T.get_or_init(|| Tokenizers {
        jieba: Jieba::new(),
        stemmer: Stemmer::create(Algorithm::English),
    })
}

const STOP_EN: &[&str] = &[
    "a", "an", "the", "is", "are", "am", "be", "do", "does", "did", "i", "my", "me", "you", "your",
    "we", "our", "it", "to", "of", "for", "in", "on", "at", "and", "or", "can", "could", "would",
    "please", "there", "this", "that", "with", "what", "s", "any",
];
const STOP_ZH: &[&str] = &[
    "的",
    "了",
    "吗",
    "呢",
    "吧",
    "啊",
    "我",
    "你",
    "您",
    "是",
    "在",
    "有",
    "想",
    "要",
    "能",
    "可以",
    "怎么",
    "什么",
    "哪里",
    "怎么办",
    "请问",
    "一下",
    "这个",
    "那个",
];

/// The words of `text` as the index sees them: lowercased, Chinese segmented, English
/// stemmed, function words dropped.
pub fn tokens(text: &str) -> Vec<String> {
    let t = tokenizers();
    let lower = text.to_lowercase();
    let mut out = Vec::new();
    for piece in t.jieba.cut_for_search(&lower, true) {
        let piece = piece.trim_matches(|c: char| !c.is_alphanumeric());
        if piece.is_empty() {
            continue;
        }
        if piece.is_ascii() {
            for word in piece.split(|c: char| !c.is_ascii_alphanumeric()) {
                if !word.is_empty() && !STOP_EN.contains(&word) {
                    out.push(t.stemmer.stem(word).into_owned());
                }
            }
        } else if !STOP_ZH.contains(&piece) {
            out.push(piece.to_owned());
        }
    }
    out
}

/// An answer the knowledge base proposes, with how sure it is.
#[derive(Clone, Debug, PartialEq)]
pub struct Hit<'a> {
    pub entry: &'a Entry,
    pub confidence: f32,
}

/// One loaded knowledge base: its entries and their index.
pub struct KnowledgeBase {
    entries: Vec<Entry>,
    /// The tokens of each indexed variant, and its entry.
    variants: Vec<(HashSet<String>, usize)>,
    idf: HashMap<String, f32>,
    reader: IndexReader,
    tokens_field: Field,
    variant_field: Field,
}

impl KnowledgeBase {
    pub fn from_toml(text: &str) -> Result<Self, KbError> {
        let file: KbFile = toml::from_str(text)?;
        let mut seen = HashSet::new();
        for e in &file.entries {
            if e.questions.is_empty() || e.answer.trim().is_empty() {
                return Err(KbError::Incomplete(e.id.clone()));
            }
            if !seen.insert(e.id.clone()) {
                return Err(KbError::Duplicate(e.id.clone()));
            }
        }
        let mut schema = Schema::builder();
        let indexing = TextFieldIndexing::default()
            .set_tokenizer("kb_ws")
            .set_index_option(IndexRecordOption::WithFreqs);
        let tokens_field = schema.add_text_field(
            "tokens",
            TextOptions::default().set_indexing_options(indexing),
        );
        let variant_field = schema.add_u64_field("variant", STORED | INDEXED);
        let index = Index::create_in_ram(schema.build());
        index.tokenizers().register(
            "kb_ws",
            TextAnalyzer::builder(WhitespaceTokenizer::default()).build(),
        );
        let mut writer = index.writer_with_num_threads(1, 15_000_000)?;
        let mut variants = Vec::new();
        let mut df: HashMap<String, usize> = HashMap::new();
        for (i, e) in file.entries.iter().enumerate() {
            for q in &e.questions {
                let toks: HashSet<String> = tokens(q).into_iter().collect();
                if toks.is_empty() {
                    continue;
                }
                for t in &toks {
                    *df.entry(t.clone()).or_default() += 1;
                }
                let joined = toks.iter().cloned().collect::<Vec<_>>().join(" ");
                writer.add_document(
                    doc!(tokens_field => joined, variant_field => variants.len() as u64),
                )?;
                variants.push((toks, i));
            }
        }
        writer.commit()?;
        let n = variants.len().max(1) as f32;
        let idf = df
            .into_iter()
            .map(|(t, d)| (t, (1.0 + n / d as f32).ln()))
            .collect();
        Ok(Self {
            entries: file.entries,
            variants,
            idf,
            reader: index.reader()?,
            tokens_field,
            variant_field,
        })
    }

    pub fn load(path: &Path) -> Result<Self, KbError> {
        Self::from_toml(&std::fs::read_to_string(path)?)
    }

    pub fn example() -> Self {
        Self::from_toml(EXAMPLE_KB).expect("the example knowledge base is valid")
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn weight<'a>(&self, toks: impl Iterator<Item = &'a String>) -> f32 {
        // A word the knowledge base has never seen weighs as much as its rarest one.
        let unseen = self.idf.values().cloned().fold(1.0, f32::max);
        toks.map(|t| self.idf.get(t).copied().unwrap_or(unseen))
            .sum()
    }

    /// The best entry for `text`, whatever its confidence; `None` when nothing matches.
    pub fn best(&self, text: &str) -> Option<Hit<'_>> {
        self.top(text, 1).into_iter().next()
    }

    /// The `k` best entries for `text`, most confident first, whatever their confidence
    /// (each entry once, with its best variant's confidence); empty when nothing matches.
    pub fn top(&self, text: &str, k: usize) -> Vec<Hit<'_>> {
        let query_tokens: HashSet<String> = tokens(text).into_iter().collect();
        if query_tokens.is_empty() || k == 0 {
            return Vec::new();
        }
        let clauses: Vec<(Occur, Box<dyn Query>)> = query_tokens
            .iter()
            .map(|t| {
                let term = Term::from_field_text(self.tokens_field, t);
                (
                    Occur::Should,
                    Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs)) as Box<dyn Query>,
                )
            })
            .collect();
        let searcher = self.reader.searcher();
        let Ok(top) = searcher.search(
            &BooleanQuery::new(clauses),
            &TopDocs::with_limit(CANDIDATES.max(k)),
        ) else {
            return Vec::new();
        };
        let q_weight = self.weight(query_tokens.iter());
        // (entry, confidence) in tantivy's order, each entry once at its best.
        let mut hits: Vec<(usize, f32)> = Vec::new();
        for (_, address) in top {
            let Ok(doc) = searcher.doc::<TantivyDocument>(address) else {
                continue;
            };
            let Some(v) = doc.get_first(self.variant_field).and_then(|v| v.as_u64()) else {
                continue;
            };
            let (vt, entry) = &self.variants[v as usize];
            let shared = self.weight(vt.intersection(&query_tokens));
            let confidence = 2.0 * shared / (q_weight + self.weight(vt.iter()));
            match hits.iter_mut().find(|(e, _)| e == entry) {
                Some((_, c)) => *c = c.max(confidence),
                None => hits.push((*entry, confidence)),
            }
        }
        // Stable: of equally confident entries, tantivy's first stays first.
        hits.sort_by(|a, b| b.1.total_cmp(&a.1));
        hits.truncate(k);
        hits.into_iter()
            .map(|(i, confidence)| Hit {
                entry: &self.entries[i],
                confidence,
            })
            .collect()
    }
}

/// Top-1 accuracy and precision/recall at a threshold on a labelled set (lines
/// `ID<TAB>question`, `none` for a question the knowledge base should not answer).
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    pub in_scope: usize,
    pub out_of_scope: usize,
    /// In-scope questions whose best entry is the right one, whatever its confidence.
    pub top1_correct: usize,
    /// Questions answered at the threshold, and how many of those rightly.
    pub answered: usize,
    pub answered_correctly: usize,
    pub mistakes: Vec<String>,
}

impl Evaluation {
    pub fn top1_accuracy(&self) -> f64 {
        self.top1_correct as f64 / self.in_scope.max(1) as f64
    }
    pub fn precision(&self) -> f64 {
        self.answered_correctly as f64 / self.answered.max(1) as f64
    }
    pub fn recall(&self) -> f64 {
        self.answered_correctly as f64 / self.in_scope.max(1) as f64
    }
}

pub fn evaluate(kb: &KnowledgeBase, labelled: &str, threshold: f32) -> Evaluation {
    let mut e = Evaluation {
        in_scope: 0,
        out_of_scope: 0,
        top1_correct: 0,
        answered: 0,
        answered_correctly: 0,
        mistakes: Vec::new(),
    };
    for line in labelled
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let Some((want, question)) = line.split_once('\t') else {
            continue;
        };
        let hit = kb.best(question);
        let got = hit.as_ref().map(|h| (h.entry.id.as_str(), h.confidence));
        if want == "none" {
            e.out_of_scope += 1;
        } else {
            e.in_scope += 1;
            if got.is_some_and(|(id, _)| id == want) {
                e.top1_correct += 1;
            }
        }
        if let Some((id, c)) = got.filter(|(_, c)| *c >= threshold) {
            e.answered += 1;
            if id == want {
                e.answered_correctly += 1;
            } else {
                e.mistakes
                    .push(format!("{question:?}: answered {id} ({c:.2}), want {want}"));
            }
        } else if want != "none" {
            let seen = got.map_or("nothing".to_owned(), |(id, c)| format!("{id} ({c:.2})"));
            e.mistakes
                .push(format!("{question:?}: silent, best {seen}, want {want}"));
        }
    }
    e
}

/// The plugin: answers from the current knowledge base above `threshold`.
pub struct KbPlugin {
    kb: RwLock<Arc<KnowledgeBase>>,
    threshold: f32,
    /// The file it was loaded from, read again by [`Plugin::reload`].
    file: Option<std::path::PathBuf>,
}

impl KbPlugin {
    pub fn new(kb: KnowledgeBase, threshold: f32) -> Self {
        Self {
            kb: RwLock::new(Arc::new(kb)),
            threshold,
            file: None,
        }
    }

    /// Loads `path`, and reloads it on [`Plugin::reload`].
    pub fn from_file(path: &Path, threshold: f32) -> Result<Self, KbError> {
        Ok(Self {
            file: Some(path.to_owned()),
            ..Self::new(KnowledgeBase::load(path)?, threshold)
        })
    }

    /// Replaces the knowledge base; messages already being answered finish with the old one.
    /// On an error the current one stays.
    pub fn reload(&self, path: &Path) -> Result<usize, KbError> {
        let fresh = Arc::new(KnowledgeBase::load(path)?);
        let n = fresh.len();
        if let Ok(mut kb) = self.kb.write() {
            *kb = fresh;
        }
        Ok(n)
    }

    /// The knowledge base in use now (the LLM plugin reads it for context).
    pub fn knowledge_base(&self) -> Option<Arc<KnowledgeBase>> {
        self.kb.read().ok().map(|kb| kb.clone())
    }

    fn decide(&self, text: &str) -> Decision {
        let Some(kb) = self.knowledge_base() else {
            return Decision::default();
        };
        match kb.best(text) {
            Some(hit) if hit.confidence >= self.threshold => Decision {
                reply: Some(hit.entry.answer.clone()),
                ..Decision::default()
                    .label("kb", hit.entry.id.clone())
                    .label("kb_confidence", format!("{:.2}", hit.confidence))
            },
            _ => Decision::default(),
        }
    }
}

impl Plugin for KbPlugin {
    fn name(&self) -> &str {
        "kb"
    }

    fn process<'a>(&'a self, turn: &'a Turn<'a>) -> PluginFuture<'a> {
        ready(self.decide(turn.text))
    }

    fn reload(&self) -> anyhow::Result<Option<String>> {
        let Some(file) = &self.file else {
            return Ok(None);
        };
        let n = KbPlugin::reload(self, file)?;
        Ok(Some(format!("{n} entries from {}", file.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The threshold the example configuration uses.
    const THRESHOLD: f32 = DEFAULT_THRESHOLD;

    #[test]
    fn tokens_segment_chinese_and_stem_english() {
        let t = tokens("How do I track my packages? 怎么查询快递物流");
        assert!(
            t.contains(&"track".to_owned()) && t.contains(&"packag".to_owned()),
            "{t:?}"
        );
        assert!(
            t.contains(&"快递".to_owned()) && t.contains(&"物流".to_owned()),
            "{t:?}"
        );
        assert!(
            !t.contains(&"怎么".to_owned()) && !t.contains(&"i".to_owned()),
            "{t:?}"
        );
    }

    #[test]
    fn evaluation_on_the_example_set() {
        let kb = KnowledgeBase::example();
        let e = evaluate(&kb, EXAMPLE_EVAL, THRESHOLD);
        println!(
            "kb: top-1 {}/{} = {:.3}; at {THRESHOLD}: answered {}, precision {:.3}, recall {:.3}; {} out of scope\n{:#?}",
            e.top1_correct, e.in_scope, e.top1_accuracy(), e.answered, e.precision(), e.recall(), e.out_of_scope, e.mistakes
        );
        for t in [0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6] {
            let e = evaluate(&kb, EXAMPLE_EVAL, t);
            println!(
                "  threshold {t}: answered {}, precision {:.3}, recall {:.3}",
                e.answered,
                e.precision(),
                e.recall()
            );
        }
        assert!(
            e.in_scope >= 30 && e.out_of_scope >= 8,
            "the labelled set is all there"
        );
        assert!(e.top1_accuracy() >= 0.8, "top-1 {:.3}", e.top1_accuracy());
        assert!(e.precision() >= 0.9, "precision {:.3}", e.precision());
    }

    #[test]
    fn answers_only_when_confident() {
        let p = KbPlugin::new(KnowledgeBase::example(), THRESHOLD);
        let d = p.decide("怎么退款");
        assert_eq!(
            d.labels.get("kb").map(String::as_str),
            Some("refund_policy")
        );
        assert!(d.reply.is_some_and(|r| r.contains("30")));
        assert_eq!(p.decide("tell me a joke"), Decision::default());
        assert_eq!(p.decide("   "), Decision::default());
    }

    #[test]
    fn top_lists_entries_once_most_confident_first() {
        let kb = KnowledgeBase::example();
        let top = kb.top("my order arrived damaged, can I get a refund?", 3);
        assert!(!top.is_empty() && top.len() <= 3, "{top:?}");
        let ids: Vec<&str> = top.iter().map(|h| h.entry.id.as_str()).collect();
        assert!(
            ids.contains(&"damaged_item") && ids.contains(&"refund_policy"),
            "{ids:?}"
        );
        let unique: HashSet<&str> = ids.iter().copied().collect();
        assert_eq!(unique.len(), ids.len(), "each entry once: {ids:?}");
        assert!(top.windows(2).all(|w| w[0].confidence >= w[1].confidence));
        assert_eq!(
            kb.best("怎么退款"),
            kb.top("怎么退款", 5).into_iter().next()
        );
        assert!(kb.top("怎么退款", 0).is_empty());
    }

    #[test]
    fn reload_replaces_the_knowledge_base_and_a_bad_file_keeps_the_old_one() {
        let dir = std::env::temp_dir().join(format!("sb-kb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("faq.toml");
        let p = KbPlugin::new(KnowledgeBase::example(), THRESHOLD);
        std::fs::write(
            &path,
            "[[entry]]\nid = \"parking\"\nquestions = [\"Where can I park?\", \"停车场在哪\"]\nanswer = \"Level -2.\"\n",
        )
        .unwrap();
        assert_eq!(p.reload(&path).unwrap(), 1);
        assert_eq!(
            p.decide("where do I park").reply.as_deref(),
            Some("Level -2.")
        );
        assert_eq!(p.decide("怎么退款").reply, None, "the old entries are gone");
        std::fs::write(
            &path,
            "[[entry]]\nid = \"broken\"\nquestions = []\nanswer = \"x\"\n",
        )
        .unwrap();
        assert!(p.reload(&path).is_err());
        assert_eq!(
            p.decide("停车场在哪").reply.as_deref(),
            Some("Level -2."),
            "kept"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
