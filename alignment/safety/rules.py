"""Category keyword rules: a cheap, transparent signal for every category, labelled data or not.

The rules are not a classifier on their own. Their hit counts are features of the trained stackers
(which learn how much a hit is worth per category), and they are the only signal for a category
that has no trained head (no labelled positives, or no head file at all).

Why words and not one big regular expression: an alternation of a few hundred patterns scanned
over every character ran at ~400 texts/s, far too slow for bulk screening. Here each text is split
into words by one C-level ``findall`` (the same word pattern as alt-profanity-check's vectorizer, so
the ``fast`` backend splits each text once for both); every distinct word is classified once
(full-match against the stem patterns below) and memoised, so the per-word cost is one dict lookup.
Phrases are looked up as word tuples, and co-occurrence rules (a minor *and* a sexual word; a group
*and* a threat) cover the compound categories.

The word lists name harmful things on purpose (slurs included): a filter cannot find what it cannot
name. They are short and generic; the trained heads do the fine-grained work.
"""

from __future__ import annotations

import re

import numpy as np

from alignment.safety.categories import CATEGORIES

#: category or auxiliary tag -> single-word patterns (full match on a lowercased word).
WORDS: dict[str, list[str]] = {
    "sexual": [r"porn\w*", r"nudes?", r"naked", r"sex(?:ual|ually|y|ting|t|ts)?", r"horny", r"orgasm\w*",
               r"blowjobs?", r"dick", r"cock", r"pussy", r"tits?", r"boobs?", r"cum(?:ming|shot)?",
               r"masturbat\w*", r"erotic\w*", r"explicit", r"nsfw", r"hentai", r"bdsm", r"kinky",
               r"slut\w*", r"whores?", r"penis", r"vagina", r"clit\w*", r"dildo\w*", r"horny", r"fetish\w*"],
    "hate": [r"nigg(?:er|a|ers|as|az)", r"fag(?:got)?s?", r"kikes?", r"retard(?:ed|s)?", r"trann(?:y|ies)",
             r"chinks?", r"spics?", r"wetbacks?", r"towelheads?", r"subhumans?", r"vermin", r"racis\w*",
             r"supremac\w*", r"nazis?", r"islamophob\w*", r"antisemit\w*", r"homophob\w*"],
    "violence": [r"kill(?:s|ed|ing|er|ers)?", r"murder\w*", r"stab(?:s|bed|bing)?", r"shoot(?:s|ing)?",
                 r"shot", r"poison\w*", r"attack\w*", r"strangl\w*", r"choke", r"punch(?:ed|ing)?",
                 r"ambush\w*", r"assault\w*", r"massacre\w*", r"slaughter\w*", r"behead\w*", r"injur\w*",
                 r"beat(?:ing)?", r"violen\w*", r"weapon\w*", r"die"],
    "harassment": [r"idiots?", r"stupid", r"morons?", r"losers?", r"pathetic", r"worthless", r"dumb(?:ass)?",
                   r"clowns?", r"ugly", r"bitch\w*", r"cunts?", r"assholes?", r"stfu", r"kys", r"bully\w*",
                   r"stalk\w*", r"dox\w*", r"humiliat\w*", r"harass\w*", r"freaks?", r"creeps?", r"scum"],
    "self-harm": [r"suicid\w*", r"self-?harm\w*", r"overdos\w*", r"anorexi\w*", r"bulimi\w*", r"purging",
                  r"razors?", r"wrists?", r"selfharm\w*", r"cutting", r"starv\w*"],
    "violence/graphic": [r"gor(?:e|y)", r"gruesome", r"bloody", r"blood", r"mutilat\w*", r"sever(?:ed|ing)",
                         r"dismember\w*", r"disembowel\w*", r"entrails", r"guts", r"decapitat\w*",
                         r"tortur\w*", r"flesh", r"corpses?", r"maggots", r"rotting", r"brutal\w*",
                         r"intestines", r"bleed\w*", r"bones"],
    "weapons": [r"bombs?", r"pipebombs?", r"explosives?", r"guns?", r"firearms?", r"rifles?", r"pistols?",
                r"silencers?", r"suppressors?", r"ammo\w*", r"ammunition", r"grenades?", r"detonat\w*",
                r"sarin", r"napalm", r"thermite", r"molotov\w*", r"ied", r"handguns?", r"shotguns?", r"ar15"],
    "cybercrime": [r"hack(?:s|ed|ing|er|ers)?", r"phish\w*", r"ransomware", r"malware", r"spyware",
                   r"keylogger\w*", r"ddos\w*", r"botnet\w*", r"exploits?", r"trojans?", r"carding",
                   r"skimm\w*", r"credentials"],
    # auxiliary tags, combined below
    "_minor": [r"child(?:ren)?", r"kids?", r"minors?", r"teens?", r"teenagers?", r"underage", r"girls?",
               r"boys?", r"students?", r"daughter", r"son", r"toddlers?", r"\d{1,2}yo", r"preteens?",
               r"loli\w*", r"schoolgirls?", r"babys?"],
    "_group": [r"jews?", r"jewish", r"muslims?", r"islam", r"blacks?", r"gays?", r"immigrants?", r"refugees?",
               r"arabs?", r"asians?", r"mexicans?", r"trans", r"transgender", r"christians?", r"women",
               r"lesbians?", r"mosques?", r"synagogues?", r"minorit\w*", r"race", r"religion", r"ethnic\w*",
               r"niggers?", r"fags?", r"homosexuals?", r"africans?", r"indians?", r"chinese", r"whites?"],
    "_threat": [r"kill", r"exterminat\w*", r"gas", r"burn", r"hang", r"lynch\w*", r"shoot", r"wipe",
                r"eradicat\w*", r"genocide", r"threat\w*", r"bomb", r"massacre", r"die", r"deport\w*",
                r"eliminat\w*", r"cleansing", r"hunt"],
    "_contempt": [r"hate", r"hates", r"inferior", r"scum", r"filth\w*", r"animals", r"disgusting", r"evil",
                  r"savages?", r"parasites?", r"vermin", r"cockroaches"],
}

#: category -> exact word pairs or triples (lowercased, as split by the word pattern).
PHRASES: dict[str, list[str]] = {
    "self-harm": ["self harm", "self harming", "kill myself", "killing myself", "end my life", "cut myself", "cutting myself",
                  "hurt myself", "hurting myself", "want to die", "wanna die", "slit my",
                  "hang myself", "starve myself", "take my life", "take my own life", "punish myself",
                  "too many pills", "better off dead"],
    "harassment": ["shut up", "fuck you", "fuck off", "go away", "nobody cares", "nobody likes you",
                   "piece of shit", "kill yourself"],
    "violence": ["beat up", "beat him", "beat her", "hurt someone", "break his", "break her", "stab him",
                 "stab her", "shoot him", "shoot her", "punch him", "punch her"],
    "sexual": ["blow job", "suck my", "have sex", "sex with", "oral sex"],
    "hate": ["white power", "heil hitler", "master race", "go back to"],
    "hate/threatening": ["death threat", "death threats", "ethnic cleansing", "race war", "final solution"],
    "weapons": ["ar 15", "pipe bomb", "fully automatic", "ghost gun", "nerve agent", "poison gas", "3d printed"],
    "cybercrime": ["credit card numbers", "identity theft", "sql injection", "fake login", "steal passwords",
                   "break into", "take down"],
}

#: category <- (tag, tag): one hit per co-occurring pair (the smaller of the two counts).
COMBOS: tuple[tuple[str, str, str], ...] = (
    ("sexual/minors", "_minor", "sexual"),
    ("hate/threatening", "_group", "_threat"),
    ("hate", "_group", "_contempt"),
)

#: Words as alt-profanity-check's TfidfVectorizer splits them (two or more word characters). Its
#: pattern is ``\b\w\w+\b``; a greedy ``\w\w+`` finds the very same maximal runs (a match can only
#: start inside a run when the run is one character long, and then it fails), 25% faster.
WORD = re.compile(r"\w\w+")
TAGS: tuple[str, ...] = (*CATEGORIES, *sorted(t for t in WORDS if t.startswith("_")))
_TAG_INDEX = {t: i for i, t in enumerate(TAGS)}


def _check() -> None:
    for table in (WORDS, PHRASES):
        unknown = sorted(t for t in table if t not in _TAG_INDEX)
        if unknown:
            raise ValueError(f"rules for unknown categories {unknown}")
    for tag, phrases in PHRASES.items():
        for phrase in phrases:
            if WORD.findall(phrase) != phrase.split():
                raise ValueError(f"phrase {phrase!r} ({tag}) does not split into words the way texts do")


_check()
_WORD_PATTERNS = [(re.compile("|".join(f"(?:{p})" for p in pats)), _TAG_INDEX[tag]) for tag, pats in WORDS.items()]
_PHRASE_TABLE: dict[tuple[str, ...], int] = {tuple(p.split()): _TAG_INDEX[tag]
                                             for tag, phrases in PHRASES.items() for p in phrases}
_PHRASE_FIRST = frozenset(k[0] for k in _PHRASE_TABLE)
_PHRASE_LENGTHS = sorted({len(k) for k in _PHRASE_TABLE})
#: word -> (tag indices, starts a phrase); ``None`` for the common case of neither. Bounded below.
_MEMO: dict[str, tuple[tuple[int, ...], bool] | None] = {}
_MEMO_LIMIT = 500_000


#: All word patterns in one: most words match none, and one regex call rejects them (a new word's
#: cost matters: a batch of unseen text is mostly new words until the memo below warms up).
_ANY_WORD = re.compile("|".join(f"(?:{p})" for pats in WORDS.values() for p in pats))


def word_tags(word: str) -> tuple[int, ...]:
    """The tag indices of one lowercased word (full match against each tag's patterns)."""
    if not _ANY_WORD.fullmatch(word):
        return ()
    return tuple(idx for pattern, idx in _WORD_PATTERNS if pattern.fullmatch(word))


def _lookup(word: str) -> tuple[tuple[int, ...], bool] | None:
    tags = word_tags(word)
    entry = (tags, word in _PHRASE_FIRST) if tags or word in _PHRASE_FIRST else None
    if len(_MEMO) >= _MEMO_LIMIT:
        _MEMO.clear()
    _MEMO[word] = entry
    return entry


def split_words(texts: list[str]) -> list[list[str]]:
    """Each text lowercased and split into words (shared with the profanity features)."""
    findall = WORD.findall
    return [findall(t.lower()) for t in texts]


def tag_counts(texts: list[str], words: list[list[str]] | None = None) -> np.ndarray:
    """Counts ``[n, len(TAGS)]`` of words and phrases per tag (categories first, then auxiliary tags).

    ``words`` (from :func:`split_words`) saves splitting the texts again.
    """
    words = split_words(texts) if words is None else words
    memo_get = _MEMO.get
    rows: list[int] = []
    cols: list[int] = []
    for i, ws in enumerate(words):
        for j, word in enumerate(ws):
            entry = memo_get(word, False)
            if entry is False:
                entry = _lookup(word)
            if entry is None:
                continue
            tags, first = entry
            for tag in tags:
                rows.append(i)
                cols.append(tag)
            if first:
                for n in _PHRASE_LENGTHS:
                    tag = _PHRASE_TABLE.get(tuple(ws[j:j + n]))
                    if tag is not None:
                        rows.append(i)
                        cols.append(tag)
    counts = np.zeros((len(words), len(TAGS)), np.float32)
    if rows:
        np.add.at(counts, (np.asarray(rows), np.asarray(cols)), 1.0)
    return counts


def rule_hits(texts: list[str], words: list[list[str]] | None = None) -> np.ndarray:
    """Hit counts ``[n, len(CATEGORIES)]`` (float32): rule matches per text and category."""
    counts = tag_counts(texts, words)
    hits = counts[:, : len(CATEGORIES)].copy()
    for category, a, b in COMBOS:
        hits[:, CATEGORIES.index(category)] += np.minimum(counts[:, _TAG_INDEX[a]], counts[:, _TAG_INDEX[b]])
    return hits


def rule_scores(hits: np.ndarray) -> np.ndarray:
    """An uncalibrated fallback probability from hit counts: 0 hits -> 0.02, 1 -> 0.5, 2 -> 0.75, ...

    Used only for categories with no trained head; a trained stacker replaces it wherever labels exist.
    """
    return np.where(hits > 0, 1.0 - np.power(0.5, hits), 0.02).astype(np.float32)
