"""Does a transcript end unfinished? A word-class judgement on what the recogniser heard.

The end-of-turn model (audio/turn.py) hears prosody; it can be sure a turn is over when
the words plainly are not ("what is the capital of …"): TTS voices and flat speakers
give it little pitch to go on. The recogniser's hypothesis at the pause says it another
way. A transcript is *unfinished* when its last token is:

- an **ellipsis** ("…", "..."): Whisper writes one where speech trails off;
- a word of a **closed class that cannot end a sentence**: articles and other
  determiners that need a noun ("the", "a", "my", "every"), coordinating conjunctions
  ("and", "or"), subordinators that need a clause ("because", "although", "than"), and
  hesitation fillers ("um", "uh"). Prepositions are not in this list: English strands
  them at the end of a question ("what is it made of?", "where are you from?"); they
  count through the next rule, where Whisper's punctuation tells stranding apart;
- **no sentence-end mark** (. ? ! and their CJK, Arabic, Devanagari forms): Whisper
  punctuates what it heard as a complete sentence and leaves a cut-off one open
  ("remind me to call", "seven times"). A cut-off preposition lands here too.

Word lists are per language (Whisper's language code, ``asr.language``); a language
without a list still gets the two punctuation rules. The lists are the grammar's closed
classes, written from the grammar, not from any recording. Transcript text is data: it is
only compared with these lists, never interpreted otherwise.

An empty transcript (noise, a cough) is not unfinished: there is nothing to wait for.

A weaker reading, ``open_list``: words that end a sentence on a **list whose last item has
no "and" or "or" before it** ("I have two beds, a stove.") read as a list still being
said. English closes a list with a conjunction before its last item ("…, a lamp, and a
toaster"); a speaker who pauses between items has not reached it yet, and Whisper, which
hears only up to the pause, writes a full stop there all the same. This reading delays an
end (the policy's longer pause, as a doubt) and never forbids it: "Tell me a joke, a
short one." is finished and waits a little longer. Written for English only (the words
that open a list item are per language, like the lists above).
"""

from __future__ import annotations

import re
import unicodedata

# A closing quote or bracket may follow the end mark ("he said 'stop.'").
_CLOSERS = "\"'”’»)]}」』"
_ELLIPSES = ("...", "…", "。。。")
# Sentence-end marks: Latin, full-width/CJK, Arabic question mark, Devanagari danda,
# Greek question mark (;), Armenian full stop, Ethiopic full stop.
_END_MARKS = ".?!。？！؟।॥;։።"
# Question marks: Latin, full-width, Arabic. (Greek's ";" is also a semicolon elsewhere.)
_QUESTION_MARKS = "?？؟"
_WORD = re.compile(r"[\w'’-]+", re.UNICODE)

# Per language: words that need something after them. Determiners that need a noun
# (articles, possessive and distributive determiners), coordinating conjunctions,
# subordinators that need a clause, hesitation fillers. Words that are also pronouns or
# can close a clause are left out (en "his", "that", "so", "but", "while"; de "das";
# fr "si", "quand"; it "perché", "quando"): a wrong "unfinished" costs a turn limit of
# waiting. Spanish and Portuguese question words carry an accent ("¿cuándo?", "por qué")
# that the conjunctions lack, so "cuando" and "porque" stay.
NEVER_FINAL: dict[str, frozenset[str]] = {
    "en": frozenset("""
        a an the my your our their its every
        and or nor
        because although unless whereas whether than
        um uh erm er uhm
    """.split()),
    "de": frozenset("""
        der die dem den des ein eine einem einen einer eines
        mein meine meinem meinen meiner meines dein deine deinem deinen deiner deines
        unser unsere unserem unseren unserer euer eure eurem euren eurer
        jede jeder jedes jedem jeden
        und oder sondern
        weil obwohl dass ob wenn als falls
        äh ähm öh
    """.split()),
    "fr": frozenset("""
        le la les l' un une des du au aux
        mon ma mes ton ta tes son sa ses notre nos votre vos leur leurs chaque
        et ou mais ni
        parce puisque lorsque qu'
        euh heu
    """.split()),
    "es": frozenset("""
        el la los las un una unos unas lo al del
        mi mis tu tus su sus nuestro nuestra nuestros nuestras cada
        y e o u ni pero sino
        porque aunque si que cuando mientras
    """.split()),
    "it": frozenset("""
        il lo la i gli le un uno una l' un' del della dei degli delle al alla ai agli alle
        mio mia miei mie tuo tua tuoi tue suo sua suoi sue ogni
        e ed o oppure ma né
        sebbene benché se che mentre
        ehm
    """.split()),
    "nl": frozenset("""
        de het een
        mijn jouw onze hun uw elk elke
        en of maar
        omdat hoewel als terwijl
        eh ehm uh
    """.split()),
    "pt": frozenset("""
        o a os as um uma uns umas ao aos do da dos das no na nos nas
        meu minha meus minhas teu tua teus tuas seu sua seus suas nosso nossa cada
        e ou mas nem
        porque embora se que enquanto
        hã éh
    """.split()),
}


def unfinished_ending(text: str, language: str = "en") -> str:
    """Why ``text`` reads as cut off, or "" when it may be a finished turn.

    The reason names the rule and the word: "ellipsis", "ends with 'the'", "no end mark".
    """
    tail = _tail(text)
    if not tail:
        return ""
    if tail.endswith(_ELLIPSES):
        return "ellipsis"
    words = _WORD.findall(tail)
    last = words[-1].lower().replace("’", "'") if words else ""
    if last and last in NEVER_FINAL.get(language.split("-")[0].lower(), frozenset()):
        return f"ends with {last!r}"
    if tail[-1] not in _END_MARKS:
        return "no end mark"
    return ""


# Per language: words that open a list item (articles, quantities, numerals) and the
# conjunctions that close a list; digits open an item too. A language without lists gets
# no open-list reading.
LIST_ITEM_OPENERS: dict[str, frozenset[str]] = {
    "en": frozenset("""
        a an the some two three four five six seven eight nine ten eleven twelve
    """.split()),
}
LIST_CLOSERS: dict[str, frozenset[str]] = {
    "en": frozenset("and or nor plus".split()),
}
_ITEM_MAX_WORDS = 5  # "a head of broccoli", "two stalks of celery"


def open_list(text: str, language: str = "en") -> str:
    """Why ``text`` reads as a list still being said, or "" (see the module's docstring).

    The last sentence (after any earlier end mark) must end in a full stop, hold a comma,
    and its last comma's segment must be a short item that a list-item word opens, with
    no conjunction in it.
    """
    lang = language.split("-")[0].lower()
    openers, closers = LIST_ITEM_OPENERS.get(lang), LIST_CLOSERS.get(lang)
    tail = _tail(text)
    if openers is None or closers is None or not tail.endswith(".") or tail.endswith(_ELLIPSES):
        return ""
    sentence = re.split(r"[.?!](?=\s)", tail[:-1])[-1]
    if "," not in sentence:
        return ""
    words = [w.lower().replace("’", "'") for w in _WORD.findall(sentence.rsplit(",", 1)[1])]
    if not words or len(words) > _ITEM_MAX_WORDS or closers & set(words):
        return ""
    if words[0] not in openers and not words[0].isdigit():
        return ""
    return f"a list whose last item ({' '.join(words)!r}) has no {sorted(closers)[0]!r} before it"


def ends_in_question(text: str) -> bool:
    """``text`` ends with a question mark (a closing quote or bracket may follow)."""
    tail = _tail(text)
    return bool(tail) and tail[-1] in _QUESTION_MARKS


def _tail(text: str) -> str:
    """The text as its last mark reads: NFC, without trailing space, quotes or brackets."""
    return unicodedata.normalize("NFC", text).strip().rstrip(_CLOSERS).rstrip()
