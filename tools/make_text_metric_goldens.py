#!/usr/bin/env python3
"""Makes tests/fixtures/text_metrics/golden.json, the reference values that
tests/eval/text_metrics_test.cpp checks dfar's ROUGE-L, BLEU and chrF against.

The reference implementations are the standard tools, with their defaults:
- ROUGE-L: Google's rouge_score, RougeScorer(['rougeL'], use_stemmer=False),
  score(target=reference, prediction=candidate);
- BLEU: sacrebleu.BLEU() (tokenize='13a', smooth_method='exp',
  lowercase=False), corpus_score(candidates, [references]); per pair also
  sacrebleu.sentence_bleu(candidate, [reference]) (its default
  use_effective_order=True);
- chrF: sacrebleu.CHRF() (char order 6, word order 0, beta 2, whitespace
  removed), corpus_score and sentence_score.

The (candidate, reference) pairs are written below: short moral-reasoning
sentences in the style of the DFAR reasons (invented here; no dataset row is
copied) and edge cases for the tokenizers. Scores are stored as the tools
report them (sacrebleu on its 0..100 scale); the C++ test rescales.

Usage (tool versions pinned in tools/requirements-tools.txt):
    /usr/bin/python3 tools/make_text_metric_goldens.py [--out FILE]
"""
import argparse
import json
import os
import platform
import sys
import unicodedata
from importlib import metadata

import sacrebleu
from rouge_score import rouge_scorer
from rouge_score import tokenize as rouge_tokenize
from sacrebleu.metrics import BLEU, CHRF

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FORMAT = "dfar-text-metric-golden"
VERSION = 1

# (group, candidate, reference). Group "moral": ordinary generated-vs-human
# reasons; group "edge": inputs that exercise one tokenizer or scoring rule.
MORAL = [
    ("It is wrong to lie to a friend because it breaks trust.",
     "Lying to a friend is wrong because it breaks their trust."),
    ("Stealing from a store is wrong because it takes what belongs to others.",
     "Taking things that belong to someone else without paying is stealing."),
    ("Helping an elderly neighbor carry groceries is kind.",
     "It is kind to help an elderly neighbor with their groceries."),
    ("Cheating on an exam is unfair to the other students.",
     "Cheating on a test is dishonest and unfair to students who studied."),
    ("Returning a lost wallet to its owner is the honest thing to do.",
     "Giving a lost wallet back to the owner is honest."),
    ("Breaking a promise hurts the person who relied on you.",
     "It is wrong to break a promise because people rely on it."),
    ("Donating blood can save lives, so it is a good act.",
     "Donating blood is good because it helps save lives."),
    ("Yelling at a waiter for a small mistake is disrespectful.",
     "Shouting at a waiter over a minor error is rude and disrespectful."),
    ("Spreading rumors about a coworker can damage their reputation.",
     "Spreading false rumors harms a person's reputation."),
    ("Feeding a stray cat shows compassion for animals.",
     "Giving food to a hungry stray cat is compassionate."),
    ("Ignoring a friend in need is uncaring.",
     "It is unkind to ignore a friend who needs help."),
    ("Taking credit for someone else's work is dishonest.",
     "Claiming credit for another person's work is dishonest and unfair."),
    ("Apologizing after hurting someone is the right thing to do.",
     "It is right to apologize when you have hurt someone."),
    ("Littering in a park harms the environment and other visitors.",
     "Throwing trash in a park is bad for the environment."),
    ("Reading someone's private diary violates their privacy.",
     "Reading another person's diary without permission is a violation of privacy."),
    ("Volunteering at a shelter helps people who have no home.",
     "Volunteering at a homeless shelter is a good way to help others."),
    ("Driving after drinking puts other people in danger.",
     "Drunk driving is wrong because it endangers others on the road."),
    ("Paying back borrowed money on time is responsible.",
     "Returning money you borrowed on time is the responsible thing to do."),
    ("Bullying a classmate causes real harm.",
     "Bullying is wrong because it hurts the victim emotionally."),
    ("Keeping a secret that a friend trusted you with is loyal.",
     "It is loyal to keep a friend's secret."),
    ("Cutting in line is unfair to people who waited.",
     "Skipping the line is unfair to everyone who has been waiting."),
    ("Praising a child for effort encourages them.",
     "Encouraging a child by praising their effort is good parenting."),
    ("Hitting someone because you are angry is wrong.",
     "Violence in anger is wrong because it harms others."),
    ("Sharing your lunch with a hungry classmate is generous.",
     "It is generous to share food with someone who is hungry."),
    ("Lying on a job application is dishonest.",
     "Putting false information on a resume is dishonest and unfair to other applicants."),
    ("Abandoning a pet is cruel because it cannot care for itself.",
     "It is cruel to abandon a pet that depends on you."),
    ("Thanking a bus driver is polite.",
     "Saying thank you to the bus driver is a polite gesture."),
    ("Mocking someone's disability is cruel and hurtful.",
     "Making fun of a person's disability is hurtful."),
    ("Recycling helps protect the planet for future generations.",
     "Recycling is good for the environment."),
    ("Standing up for a bullied student is brave and right.",
     "Defending someone who is being bullied is the right thing to do."),
    ("Telling the truth is important even when it is hard.",
     "Being honest matters even when the truth is difficult."),
    ("Stealing a car is a serious crime that harms the owner.",
     "Taking someone's car without permission is theft."),
    ("Visiting a sick friend in the hospital shows care.",
     "It is caring to visit a friend who is sick in the hospital."),
    ("Forging a signature is fraud.",
     "Signing someone else's name without permission is forgery and fraud."),
    ("Holding the door for someone is a small act of kindness.",
     "Holding a door open for others is kind and considerate."),
    ("Ignoring safety rules at work puts coworkers at risk.",
     "Breaking safety rules endangers the people you work with."),
    ("Comforting a crying child is kind.",
     "It is kind to comfort a child who is upset."),
    ("Selling fake medicine can hurt sick people.",
     "Selling counterfeit medicine is dangerous and deceptive."),
    ("Respecting your parents' wishes is considerate.",
     "It is considerate to respect what your parents want."),
    ("Insulting a stranger online is rude.",
     "Posting insults at strangers on the internet is rude and hurtful."),
    ("Planting trees in the neighborhood benefits everyone.",
     "Planting trees is good for the community and the environment."),
    ("Breaking into a house is illegal and violates the owner's safety.",
     "Burglary is wrong because it violates people's homes and safety."),
    ("Telling a teacher about bullying protects the victim.",
     "Reporting bullying to a teacher helps protect the student being bullied."),
    ("Wasting food while others go hungry is careless.",
     "Throwing away good food is wasteful when people are hungry."),
    ("Teaching a younger sibling to read is helpful.",
     "Helping a younger brother or sister learn to read is a kind thing to do."),
    ("Refusing to help a drowning person when you can is wrong.",
     "It is wrong not to help someone who is drowning if you are able to."),
]

EDGE = [
    ("", "It is wrong to lie to a friend because it breaks trust."),  # empty candidate
    ("It is wrong to lie to a friend because it breaks trust.",
     "It is wrong to lie to a friend because it breaks trust."),  # identical
    ("Wrong!!! Why?! Because... it -- hurts (a lot); okay?",
     "wrong, because it hurts: a lot."),  # punctuation-heavy
    ("He paid $5,000 for 3.5 acres, i.e. 10% of 1,000,000 dollars.",
     "He paid 5000 dollars for 3.5 acres, which is 10 percent."),  # numbers
    ("It isn't fair, and they don't care; it's wrong.",
     "It is not fair and they do not care, it is wrong."),  # contractions
    ("A well-intentioned 10-year-old shouldn't be self-centered.",
     "A well intentioned ten year old should not be self centered."),  # hyphens
    ("The caf\u00e9's na\u00efve owner said \u201cno\u201d \u2014 that\u2019s r\u00fcde.",
     "The cafe's naive owner said \"no\", that's rude."),  # unicode
    ("wrong wrong wrong wrong wrong wrong", "it is wrong"),  # repeated words
    ("wrong", "wrong"),  # single word, identical
    ("ethical", "unethical"),  # single word, different
    ("IT IS WRONG TO STEAL", "it is wrong to steal"),  # case differences
    ("Stealing Is Wrong Because It Hurts Others.",
     "stealing is wrong because it hurts others."),
    ("Tom &amp; Jerry said &quot;stop&quot; &lt;now&gt; &amp;quot;",
     "Tom & Jerry said \"stop\" <now>"),  # 13a HTML entities
    ("It was <skipped> wrong", "It was wrong"),  # 13a <skipped>
    ("This is a well-\nknown rule.\nSecond line.",
     "This is a wellknown rule. Second line."),  # 13a hyphen-newline, newline
    ("  lots   of\tspaces\t here  \n", "lots of spaces here"),  # whitespace
    ("non\u00a0breaking\u2003spaces\u3000here", "non breaking spaces here"),  # unicode whitespace
    ("U.S. law, e.g. 1.5 or 2,5 and 3-4, 5 - 6; x.y,z", "U.S. law e.g. 1.5 2,5 3-4"),  # 13a periods/commas/dashes
    ("a..b,,c .,d 7.,8 9,.x", "a . . b , , c"),  # adjacent periods and commas
    ("({[<hi>]}) @user #tag ~ ` ^ _ | \\ /path", "hi user tag path"),  # 13a symbol class
    ("\u0130stanbul \u212aelvin STRASSE stra\u00dfe", "istanbul kelvin strasse"),  # lower() to ASCII
    ("\u4e0d\u8981\u8aaa\u8b0a \U0001F600 ok", "\u4e0d\u8981\u8aaa\u8b0a ok"),  # CJK and emoji
    ("\u0394\u03b9\u03ba\u03b1\u03b9\u03bf\u03c3\u03cd\u03bd\u03b7 is justice.",
     "\u03b4\u03b9\u03ba\u03b1\u03b9\u03bf\u03c3\u03cd\u03bd\u03b7 is justice."),  # Greek case
    ("...", "It is wrong."),  # punctuation only: no ROUGE tokens
    ("It is wrong.", ""),  # empty reference
    ("yes", "It is wrong to lie to a friend because it breaks trust and hurts them."),  # very short
    ("It is wrong to lie to a friend because it breaks trust and it hurts them deeply "
     "and it makes future friendships harder to build for everyone involved.",
     "Lying breaks trust."),  # long candidate
    ("the the the the the the the", "the cat is on the mat"),  # clipping
    ("It's wrong\u2019s \u2018quoted\u2019 'single' \"double\"", "its wrong s quoted single double"),  # quotes
    ("x", "y"),  # no overlap at all
    ("Truth matters .", "Truth matters."),  # already tokenized period
    ("end with dash- and -start and mid-dle 5-", "end with dash and start and middle 5"),  # dashes
]

def pairs():
    rows = [("moral", c, r) for c, r in MORAL] + [("edge", c, r) for c, r in EDGE]
    return [{"id": i, "group": g, "candidate": c, "reference": r} for i, (g, c, r) in enumerate(rows)]


def bleu_stats(score):
    return {
        "score": score.score,
        "precisions": list(score.precisions),
        "bp": score.bp,
        "sys_len": score.sys_len,
        "ref_len": score.ref_len,
        "counts": list(score.counts),
        "totals": list(score.totals),
    }


def per_pair(rows):
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    tok13a = BLEU().tokenizer
    chrf = CHRF()
    for row in rows:
        cand, ref = row["candidate"], row["reference"]
        rl = scorer.score(target=ref, prediction=cand)["rougeL"]
        row["rouge_tokens_candidate"] = rouge_tokenize.tokenize(cand, None)
        row["rouge_tokens_reference"] = rouge_tokenize.tokenize(ref, None)
        row["rouge_l"] = {"precision": rl.precision, "recall": rl.recall, "fmeasure": rl.fmeasure}
        # BLEU._preprocess_segment: rstrip, then the 13a tokenizer.
        row["bleu_13a_candidate"] = tok13a(cand.rstrip())
        row["bleu_13a_reference"] = tok13a(ref.rstrip())
        row["sentence_bleu"] = bleu_stats(sacrebleu.sentence_bleu(cand, [ref]))
        row["sentence_chrf"] = chrf.sentence_score(cand, [ref]).score
    return rows


def corpus(name, rows):
    cands = [r["candidate"] for r in rows]
    refs = [r["reference"] for r in rows]
    return {
        "name": name,
        "ids": [r["id"] for r in rows],
        "bleu": bleu_stats(BLEU().corpus_score(cands, [refs])),
        "chrf": CHRF().corpus_score(cands, [refs]).score,
    }


def corpora(rows):
    """Corpus BLEU and chrF over all pairs and over sub-corpora. "short" holds
    the pairs whose candidates have under 4 13a tokens (no 4-grams: BLEU 0
    through sacrebleu's floored log); "smoothed" the pairs with no 4-gram
    match but some unigram match (exercises exp smoothing)."""

    def bleu_order_matches(r, n):
        return r["sentence_bleu"]["counts"][n - 1]

    groups = [
        ("all", rows),
        ("moral", [r for r in rows if r["group"] == "moral"]),
        ("edge", [r for r in rows if r["group"] == "edge"]),
        ("first_10", rows[:10]),
        ("short", [r for r in rows if len(r["bleu_13a_candidate"].split()) < 4]),
        ("smoothed", [r for r in rows if bleu_order_matches(r, 4) == 0 and bleu_order_matches(r, 1) > 0]),
        ("single", rows[:1]),
    ]
    out = [corpus(name, sub) for name, sub in groups]
    smoothed = next(c for c in out if c["name"] == "smoothed")["bleu"]
    assert smoothed["counts"][3] == 0 and smoothed["score"] > 0, "the smoothed corpus must exercise exp smoothing"
    short = next(c for c in out if c["name"] == "short")["bleu"]
    assert short["totals"][3] == 0, "the short corpus must have no 4-grams"
    return out


def signature(metric):
    # sacrebleu knows the reference count only after scoring something.
    metric.corpus_score(["a"], [["a"]])
    return str(metric.get_signature())


def generator():
    return {
        "script": "tools/make_text_metric_goldens.py",
        "python": platform.python_version(),
        "unicode": unicodedata.unidata_version,
        "rouge_score": metadata.version("rouge_score"),
        "sacrebleu": sacrebleu.__version__,
        "rouge": "rouge_scorer.RougeScorer(['rougeL'], use_stemmer=False).score(target=reference, prediction=candidate)",
        "bleu_signature": signature(BLEU()),
        "sentence_bleu": "sacrebleu.sentence_bleu(candidate, [reference]) (use_effective_order=True)",
        "chrf_signature": signature(CHRF()),
        "scale": "sacrebleu scores are 0..100 as sacrebleu reports them; rouge 0..1",
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "text_metrics", "golden.json"))
    args = parser.parse_args()
    rows = per_pair(pairs())
    assert len(rows) >= 60, len(rows)
    doc = {"format": FORMAT, "version": VERSION, "generator": generator(), "pairs": rows, "corpora": corpora(rows)}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, ensure_ascii=True)
        f.write("\n")
    print(f"wrote {args.out}: {len(rows)} pairs, {len(doc['corpora'])} corpora", file=sys.stderr)


if __name__ == "__main__":
    main()
