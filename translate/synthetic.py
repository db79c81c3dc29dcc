"""A synthetic English→German parallel corpus: the project's deterministic demo data.

`generate_pairs(n, seed=...)` draws sentences from a small grammar over a closed bilingual lexicon
and renders each in both languages: "Today the big dog does not see a red car." → "Heute sieht der
große Hund kein rotes Auto." The German is a function of the English (all randomness goes into
choosing the English), so a tiny Transformer learns it in minutes, yet it needs what translation needs:

- gender and case: der/die/das, ein, kein, mein, dieser in nominative, accusative and dative, with
  weak, mixed and strong adjective endings ("einen großen Hund", "mit zwei kleinen Kindern");
- verb agreement and stem changes ("ich sehe", "er sieht", "wir sehen"), dative verbs ("hilft dem Kind");
- word order: verb-second after a fronted time word, verb-first questions, separable verbs
  ("ruft den Lehrer an"), verb-final subordinate clauses ("..., weil der Hund die Katze nicht sieht.");
- negation: "nicht" after a definite object, "kein" instead of an indefinite one.

Sentences are statements (with an optional time word, in front or not, and a place or "with" phrase),
yes/no questions, and two clauses joined by because / when / if / that; 3 to 15 English words.

Each template was checked to give grammatical German in all its renderings; keep it so when adding
one. Bump `SYNTHETIC_VERSION` whenever the output for some (n, seed) changes: the data cache hashes it.
"""

from __future__ import annotations

import enum
import functools
import random
from dataclasses import dataclass

SYNTHETIC_VERSION = 1
MIN_WORDS, MAX_WORDS = 3, 15  # English sentence length; draws outside the range are redrawn


class Case(enum.Enum):
    NOM, ACC, DAT = "nominative", "accusative", "dative"


class Slot(enum.Enum):
    """A column of a German declension table: the gender of a singular noun, or the plural."""

    M, F, N, PL = "m", "f", "n", "pl"


def _declension(nom: str, acc: str, dat: str) -> dict[tuple[Case, Slot], str]:
    """A grammar-book table: one row per case, columns m f n pl; '-' is an empty ending."""
    return {(case, slot): "" if cell == "-" else cell
            for case, row in zip(Case, (nom, acc, dat)) for slot, cell in zip(Slot, row.split())}


#                        m    f    n    pl
ARTICLE = _declension("der  die  das  die",   # nominative
                      "den  die  das  die",   # accusative
                      "dem  der  dem  den")   # dative
STRONG = _declension("er   e    es   e",      # dieser; an adjective with no ending before it
                     "en   e    es   e",
                     "em   er   em   en")
EIN = _declension("-    e    -    e",         # ein, kein, mein: strong, but bare in three slots
                  "en   e    -    e",
                  "em   er   em   en")
WEAK = _declension("e    e    e    en",       # an adjective after a determiner that shows the case
                   "en   e    e    en",
                   "en   en   en   en")
CONTRACTIONS = {"in": "im", "von": "vom"}  # German always contracts these with "dem"


@dataclass(frozen=True)
class Determiner:
    en: str | None  # before a singular noun; None: it takes no singular ("two")
    en_plural: str | None  # None: it takes no plural ("a")
    de: str  # the stem the endings attach to
    endings: dict[tuple[Case, Slot], str] | None = None  # None: never inflected ("zwei")


THE = Determiner("the", "the", "", ARTICLE)
A = Determiner("a", None, "ein", EIN)
BARE = Determiner(None, "", "")  # "dogs" → "Hunde"
NO = Determiner("a", "any", "kein", EIN)  # "does not see a dog / any dogs" → "keinen Hund / keine Hunde"
THIS = Determiner("this", "these", "dies", STRONG)
NUMBERS = tuple(Determiner(None, en, de) for en, de in [("two", "zwei"), ("three", "drei"), ("four", "vier")])
POSSESSIVES = tuple(Determiner(en, en, de, EIN)
                    for en, de in [("my", "mein"), ("his", "sein"), ("her", "ihr"), ("our", "unser"), ("their", "ihr")])


def _pairs(text: str) -> list[list[str]]:
    """'big=groß, every day=jeden Tag' → [["big", "groß"], ["every day", "jeden Tag"]]."""
    return [item.strip().split("=") for item in text.split(",") if item.strip()]


# ---------------------------------------------------------------------------------------------------
# Lexicon. Kinds decide what fills a slot: a verb names the noun kinds of its subject and object, a
# preposition those of its noun, an adjective those it describes. Nouns whose English singular and
# plural coincide ("sheep") are left out: they would make the German ambiguous.

@dataclass(frozen=True)
class Noun:
    en: str
    en_plural: str
    gender: Slot
    de: str
    de_plural: str
    kinds: frozenset[str]


NOUN_GROUPS = {  # kind: "English singular/plural=German article singular/plural, ..."
    "person": """man/men=der Mann/Männer, woman/women=die Frau/Frauen, child/children=das Kind/Kinder,
        girl/girls=das Mädchen/Mädchen, teacher/teachers=der Lehrer/Lehrer, doctor/doctors=der Arzt/Ärzte,
        friend/friends=der Freund/Freunde, sister/sisters=die Schwester/Schwestern,
        brother/brothers=der Bruder/Brüder, mother/mothers=die Mutter/Mütter, father/fathers=der Vater/Väter,
        king/kings=der König/Könige, queen/queens=die Königin/Königinnen, aunt/aunts=die Tante/Tanten""",
    "animal": """dog/dogs=der Hund/Hunde, cat/cats=die Katze/Katzen, bird/birds=der Vogel/Vögel,
        horse/horses=das Pferd/Pferde, mouse/mice=die Maus/Mäuse, cow/cows=die Kuh/Kühe,
        duck/ducks=die Ente/Enten, fox/foxes=der Fuchs/Füchse, rabbit/rabbits=das Kaninchen/Kaninchen""",
    "thing": """car/cars=das Auto/Autos, book/books=das Buch/Bücher, letter/letters=der Brief/Briefe,
        newspaper/newspapers=die Zeitung/Zeitungen, table/tables=der Tisch/Tische, chair/chairs=der Stuhl/Stühle,
        bed/beds=das Bett/Betten, door/doors=die Tür/Türen, window/windows=das Fenster/Fenster,
        box/boxes=die Kiste/Kisten, bag/bags=die Tasche/Taschen, bottle/bottles=die Flasche/Flaschen,
        cup/cups=die Tasse/Tassen, ball/balls=der Ball/Bälle, key/keys=der Schlüssel/Schlüssel,
        hat/hats=der Hut/Hüte, picture/pictures=das Bild/Bilder, flower/flowers=die Blume/Blumen,
        phone/phones=das Telefon/Telefone, boat/boats=das Boot/Boote, bicycle/bicycles=das Fahrrad/Fahrräder""",
    "food": """apple/apples=der Apfel/Äpfel, cake/cakes=der Kuchen/Kuchen, banana/bananas=die Banane/Bananen,
        egg/eggs=das Ei/Eier, pear/pears=die Birne/Birnen, sausage/sausages=die Wurst/Würste,
        cookie/cookies=der Keks/Kekse""",
    "place": """garden/gardens=der Garten/Gärten, park/parks=der Park/Parks, city/cities=die Stadt/Städte,
        school/schools=die Schule/Schulen, kitchen/kitchens=die Küche/Küchen, forest/forests=der Wald/Wälder,
        room/rooms=das Zimmer/Zimmer, village/villages=das Dorf/Dörfer, house/houses=das Haus/Häuser,
        shop/shops=der Laden/Läden, office/offices=das Büro/Büros, church/churches=die Kirche/Kirchen""",
    "outdoors": "street/streets=die Straße/Straßen, tree/trees=der Baum/Bäume, bridge/bridges=die Brücke/Brücken",
}
EXTRA_KINDS = {  # kind: English nouns that have it besides their group's
    "text": "book letter newspaper", "opens": "book letter door window box bag bottle", "toy": "ball",
    "container": "box bag bottle cup",
    "surface": "table chair bed box boat street", "cover": "car table chair bed tree bridge",
    "landmark": "car table door window school house church tree bridge", "place": "car", "thing": "house",
    "accessory": "dog cat book bag ball key hat flower phone bicycle",  # "the man with the dog"
}
GENDERS = {"der": Slot.M, "die": Slot.F, "das": Slot.N}


def _noun(kind: str, english: str, german: str) -> Noun:
    """("person", "man/men", "der Mann/Männer") → Noun("man", "men", Slot.M, "Mann", "Männer", ...)."""
    en, en_plural = english.split("/")
    article, forms = german.split()
    extra = [extra_kind for extra_kind, nouns in EXTRA_KINDS.items() if en in nouns.split()]
    return Noun(en, en_plural, GENDERS[article], *forms.split("/"), frozenset([kind, *extra]))


NOUNS = {noun.en: noun for kind, entries in NOUN_GROUPS.items() for noun in (_noun(kind, *e) for e in _pairs(entries))}


@dataclass(frozen=True)
class Word:
    """An adjective (kinds: the nouns it describes), a preposition (kinds: the nouns it takes; all
    take the dative here), or a time word (kinds: {"end"} when it may also close the English sentence)."""

    en: str
    de: str
    kinds: frozenset[str] = frozenset()


ADJECTIVES = {en: Word(en, de, frozenset(kinds.split())) for kinds, entries in {
    "person animal thing food place outdoors": "big=groß, small=klein, old=alt, beautiful=schön, good=gut",
    "person animal": "young=jung, tired=müde, hungry=hungrig, friendly=freundlich, clever=klug, lazy=faul",
    "animal thing": "black=schwarz, white=weiß, brown=braun",
    "thing": "red=rot, blue=blau, green=grün, yellow=gelb, heavy=schwer",
    "container": "empty=leer, full=voll",
    "thing place outdoors": "new=neu, clean=sauber, dirty=schmutzig",
    "food": "fresh=frisch, sweet=süß, warm=warm",
}.items() for en, de in _pairs(entries)}
PREPOSITIONS = {en: Word(en, de, frozenset(kinds.split())) for en, de, kinds in [
    ("in", "in", "place"), ("on", "auf", "surface"), ("under", "unter", "cover"), ("behind", "hinter", "landmark"),
    ("next to", "neben", "landmark"), ("with", "mit", "person animal"), ("from", "von", "person")]}
WITH_ACCESSORY = Word("with", "mit", frozenset({"accessory"}))  # "the man with the red hat"
TIMES = tuple(Word(en, de, frozenset(kinds)) for kinds, entries in [
    ({"end"}, "today=heute, now=jetzt, every day=jeden Tag, in the morning=am Morgen, in the evening=am Abend,"
              "on Monday=am Montag, on Friday=am Freitag, on Sunday=am Sonntag"),
    (set(), "often=oft, sometimes=manchmal, usually=normalerweise")] for en, de in _pairs(entries))


class Frame(enum.Enum):
    """What a verb takes besides its subject."""

    INTRANSITIVE = "nothing"
    ACCUSATIVE = "an accusative object"
    DATIVE = "a dative object: hilft dem Kind"
    DITRANSITIVE = "a dative person, then an accusative thing: gibt dem Kind ein Buch"
    THAT = "a that-clause: sagt, dass ..."


class Agreement(enum.Enum):
    FIRST_SINGULAR, THIRD_SINGULAR, PLURAL = "ich", "er/sie", "wir/sie"  # wir and sie share every form here


@dataclass(frozen=True)
class Verb:
    en: str  # "see", "look for"
    en_3sg: str  # "sees", "looks for"
    de: dict[Agreement, str]  # finite forms: sehe, sieht, sehen
    particle: str  # a separable prefix goes last in a main clause: "ruft ... an"
    frame: Frame
    subject: frozenset[str]  # noun kinds
    objects: frozenset[str]  # noun kinds of the object (of the accusative thing for DITRANSITIVE)
    preps: tuple[Word, ...]  # prepositional phrases it may take
    pp_required: bool  # "wohnt in der Stadt", never just "wohnt"


def _verbs(frame: Frame, table: str) -> list[Verb]:
    """Rows `English base, 3sg | German ich, er, wir | subject kinds | object kinds | prepositions`:
    '-' is none, '!' after a preposition makes it required, '_' joins words ("rufe_an", "look_for")."""
    verbs = []
    for row in filter(None, map(str.strip, table.splitlines())):
        english, german, subject, objects, preps = (cell.split() for cell in row.split("|"))
        finite = [form.split("_") for form in german]  # "ruft_an" → ["ruft", "an"]
        verbs.append(Verb(
            en=english[0].replace("_", " "), en_3sg=english[1].replace("_", " "),
            de=dict(zip(Agreement, (form[0] for form in finite))), particle=finite[0][1] if len(finite[0]) > 1 else "",
            frame=frame, subject=frozenset(subject), objects=frozenset(objects) - {"-"},
            preps=tuple(PREPOSITIONS[p.rstrip("!").replace("_", " ")] for p in preps if p != "-"),
            pp_required=preps[-1].endswith("!")))
    return verbs


VERBS = _verbs(Frame.INTRANSITIVE, """
    sleep sleeps       | schlafe schläft schlafen     | person animal | - | in on under
    play plays         | spiele spielt spielen        | person animal | - | in with behind next_to
    run runs           | renne rennt rennen           | person animal | - | in with
    sing sings         | singe singt singen           | person        | - | in with
    work works         | arbeite arbeitet arbeiten    | person        | - | in with
    live lives         | wohne wohnt wohnen           | person        | - | in!
    sit sits           | sitze sitzt sitzen           | person animal | - | in on under behind next_to
    wait waits         | warte wartet warten          | person animal | - | in behind next_to with
    laugh laughs       | lache lacht lachen           | person        | - | in with
""") + _verbs(Frame.ACCUSATIVE, """
    see sees           | sehe sieht sehen            | person animal | person animal thing food place | in
    have has           | habe hat haben              | person        | animal thing                   | -
    buy buys           | kaufe kauft kaufen          | person        | thing food                     | in
    find finds         | finde findet finden         | person animal | animal thing food              | in
    like likes         | mag mag mögen               | person animal | person animal thing food       | -
    need needs         | brauche braucht brauchen    | person        | thing                          | -
    carry carries      | trage trägt tragen          | person        | thing food                     | -
    read reads         | lese liest lesen            | person        | text                           | in
    write writes       | schreibe schreibt schreiben | person        | text                           | in
    open opens         | öffne öffnet öffnen         | person        | opens                          | -
    wash washes        | wasche wäscht waschen       | person        | animal thing                   | in
    visit visits       | besuche besucht besuchen    | person        | person place                   | -
    call calls         | rufe_an ruft_an rufen_an    | person        | person                         | -
    eat eats           | esse isst essen             | person        | food                           | in with
    eat eats           | fresse frisst fressen       | animal        | food                           | in
    catch catches      | fange fängt fangen          | person animal | animal toy                     | in
    know knows         | kenne kennt kennen          | person        | person animal place            | -
    look_for looks_for | suche sucht suchen          | person animal | person animal thing            | in
    get gets           | bekomme bekommt bekommen    | person        | thing food                     | from
""") + _verbs(Frame.DATIVE, """
    help helps         | helfe hilft helfen          | person        | person animal                  | in
    thank thanks       | danke dankt danken          | person        | person                         | -
    follow follows     | folge folgt folgen          | person animal | person animal                  | in
    answer answers     | antworte antwortet antworten | person       | person                         | -
""") + _verbs(Frame.DITRANSITIVE, """
    give gives         | gebe gibt geben             | person        | thing food                     | -
    show shows         | zeige zeigt zeigen          | person        | animal thing                   | -
    send sends         | schicke schickt schicken    | person        | text food                      | -
""") + _verbs(Frame.THAT, """
    say says           | sage sagt sagen             | person        | -                              | -
    think thinks       | denke denkt denken          | person        | -                              | -
    know knows         | weiß weiß wissen            | person        | -                              | -
""")
CLAUSE_VERBS = tuple(v for v in VERBS if v.frame is not Frame.THAT)
SAYING_VERBS = tuple(v for v in VERBS if v.frame is Frame.THAT)
RECIPIENTS = frozenset({"person"})  # who is given, shown or sent something


@dataclass(frozen=True)
class Pronoun:
    en: str
    de: str
    agreement: Agreement


# No "you" (du / ihr / Sie) and no "it" (er / sie / es): the German would not follow from the English.
PRONOUNS = tuple(Pronoun(en, de, agreement) for en, de, agreement in [
    ("I", "ich", Agreement.FIRST_SINGULAR), ("he", "er", Agreement.THIRD_SINGULAR),
    ("she", "sie", Agreement.THIRD_SINGULAR), ("we", "wir", Agreement.PLURAL), ("they", "sie", Agreement.PLURAL)])


# ---------------------------------------------------------------------------------------------------
# Phrases and clauses, and how each language renders them: lists of words that `sentence` joins.

@dataclass(frozen=True)
class NounPhrase:
    determiner: Determiner
    noun: Noun
    plural: bool = False
    adjective: Word | None = None
    modifier: PrepPhrase | None = None  # "the man with the red hat"


@dataclass(frozen=True)
class PrepPhrase:
    preposition: Word
    np: NounPhrase


Subject = tuple[NounPhrase | Pronoun, ...]  # one, or two joined by "and"


@dataclass(frozen=True)
class Clause:
    subject: Subject
    verb: Verb
    recipient: NounPhrase | None = None  # the dative person of a ditransitive verb
    obj: NounPhrase | None = None  # the direct object (dative for Frame.DATIVE)
    pp: PrepPhrase | None = None
    negated: bool = False
    time: Word | None = None
    time_first: bool = False  # "Today the dog ..." → "Heute sieht der Hund ..."


class Order(enum.Enum):
    """Where the German finite verb goes."""

    VERB_SECOND = "statement: one constituent, then the verb"
    VERB_FIRST = "yes/no question, or a main clause after a fronted subordinate clause"
    VERB_LAST = "subordinate clause"


def slot(np: NounPhrase) -> Slot:
    return Slot.PL if np.plural else np.noun.gender


def german_np(np: NounPhrase | None, case: Case) -> list[str]:
    if np is None:
        return []
    det, s = np.determiner, slot(np)
    words = [det.de + det.endings[case, s] if det.endings else det.de]
    if np.adjective:
        # The case ending shows once: on the determiner ("den großen", weak) or else on the adjective
        # ("ein großer", "zwei große": strong).
        ending = (WEAK if det.endings and det.endings[case, s] else STRONG)[case, s]
        stem = np.adjective.de
        words.append(stem + (ending[1:] if stem.endswith("e") else ending))  # müde + en → müden
    noun = np.noun.de_plural if np.plural else np.noun.de
    # The dative plural adds -n unless the plural already ends in -n or -s: den Kindern, den Autos.
    if np.plural and case is Case.DAT and not noun.endswith(("n", "s")):
        noun += "n"
    return [w for w in words if w] + [noun] + german_pp(np.modifier)  # a bare plural has no determiner


def german_pp(pp: PrepPhrase | None) -> list[str]:
    if pp is None:
        return []
    words = german_np(pp.np, Case.DAT)
    contracted = CONTRACTIONS.get(pp.preposition.de)
    if contracted and pp.np.determiner is THE and slot(pp.np) in (Slot.M, Slot.N):
        return [contracted] + words[1:]  # "in dem Garten" → "im Garten"
    return [pp.preposition.de] + words


def english_np(np: NounPhrase | None) -> list[str]:
    if np is None:
        return []
    det = np.determiner.en_plural if np.plural else np.determiner.en
    words = [det] + ([np.adjective.en] if np.adjective else []) + [np.noun.en_plural if np.plural else np.noun.en]
    if det == "a" and words[1][0] in "aeiou":
        words[0] = "an"
    return [w for w in words if w] + english_pp(np.modifier)


def english_pp(pp: PrepPhrase | None) -> list[str]:
    return [pp.preposition.en] + english_np(pp.np) if pp else []


def agreement(subject: Subject) -> Agreement:
    if len(subject) > 1:  # "the dog and the cat"
        return Agreement.PLURAL
    if isinstance(subject[0], Pronoun):
        return subject[0].agreement
    return Agreement.PLURAL if subject[0].plural else Agreement.THIRD_SINGULAR


def subject_words(subject: Subject, *, german: bool) -> list[str]:
    parts = [([s.de] if german else [s.en]) if isinstance(s, Pronoun) else
             german_np(s, Case.NOM) if german else english_np(s) for s in subject]
    return [w for i, part in enumerate(parts) for w in ([("und" if german else "and")] if i else []) + part]


def english_clause(c: Clause, *, question: bool = False) -> list[str]:
    agree = agreement(c.subject)
    do = "does" if agree is Agreement.THIRD_SINGULAR else "do"
    subject = subject_words(c.subject, german=False)
    time = [c.time.en] if c.time else []
    rest = english_np(c.recipient) + english_np(c.obj) + english_pp(c.pp) + ([] if c.time_first else time)
    if question:
        return [do] + subject + [c.verb.en] + rest
    verb = [do, "not", c.verb.en] if c.negated else [c.verb.en_3sg if agree is Agreement.THIRD_SINGULAR else c.verb.en]
    return (time if c.time_first else []) + subject + verb + rest


def german_clause(c: Clause, order: Order) -> list[str]:
    finite = c.verb.de[agreement(c.subject)]
    subject = subject_words(c.subject, german=True)
    time = [c.time.de] if c.time else []
    # 1. The first position of a verb-second clause: a fronted time word, or else the subject.
    front: list[str] = []
    if order is Order.VERB_SECOND:
        front, time, subject = (time, [], subject) if c.time_first else (subject, time, [])
    # 2. The middle field, in the neutral order: subject, time, dative, accusative, "nicht", place.
    # "nicht" follows a definite object ("sieht den Hund nicht"); "kein" replaces an indefinite one.
    object_case = Case.DAT if c.verb.frame is Frame.DATIVE else Case.ACC
    negation = ["nicht"] if c.negated and not (c.obj and c.obj.determiner is NO) else []
    middle = (subject + time + german_np(c.recipient, Case.DAT) + german_np(c.obj, object_case)
              + negation + german_pp(c.pp))
    # 3. The verb: last, with its particle, in a subordinate clause; else second or first.
    if order is Order.VERB_LAST:
        return middle + [c.verb.particle + finite]
    return front + [finite] + middle + [c.verb.particle]


def sentence(words: list[str], end: str) -> str:
    text = " ".join(w for w in words if w).replace(" ,", ",")
    return text[0].upper() + text[1:] + end


# ---------------------------------------------------------------------------------------------------
# Random choices, all drawn from the `rng` passed in, in a fixed order: (n, seed) fixes the corpus.

@functools.lru_cache(maxsize=None)
def nouns_of(kinds: frozenset[str]) -> tuple[Noun, ...]:
    return tuple(noun for noun in NOUNS.values() if noun.kinds & kinds)


@functools.lru_cache(maxsize=None)
def adjectives_for(noun: Noun) -> tuple[Word, ...]:
    return tuple(adjective for adjective in ADJECTIVES.values() if adjective.kinds & noun.kinds)


def random_determiner(rng: random.Random, plural: bool, *, negated: bool, definite: bool) -> Determiner:
    r = rng.random()
    if plural:
        det = (THE if r < 0.35 else BARE if r < 0.6 else rng.choice(NUMBERS) if r < 0.8
               else rng.choice(POSSESSIVES) if r < 0.9 else THIS)
    else:
        det = THE if r < 0.45 else A if r < 0.75 else rng.choice(POSSESSIVES) if r < 0.87 else THIS
    if (definite and det in (A, BARE)) or ((definite or negated) and det in NUMBERS):
        return THE  # "sieht zwei Hunde nicht" would be odd
    return NO if negated and det in (A, BARE) else det


def random_np(rng: random.Random, kinds: frozenset[str], *, negated: bool = False, definite: bool = False,
              modified: bool = False) -> NounPhrase:
    noun = rng.choice(nouns_of(kinds))
    plural = rng.random() < 0.3
    det = random_determiner(rng, plural, negated=negated, definite=definite)
    adjective = rng.choice(adjectives_for(noun)) if rng.random() < 0.35 else None
    modifier = None
    if modified and "person" in noun.kinds and rng.random() < 0.12:
        modifier = PrepPhrase(WITH_ACCESSORY, random_np(rng, WITH_ACCESSORY.kinds))
    return NounPhrase(det, noun, plural, adjective, modifier)


def random_subject(rng: random.Random, kinds: frozenset[str]) -> Subject:
    r = rng.random()
    if "person" in kinds and r < 0.2:
        return (rng.choice(PRONOUNS),)
    if r < 0.27:  # "the dog and the cat": two different nouns
        first, second = random_np(rng, kinds), random_np(rng, kinds)
        while second.noun == first.noun:
            second = random_np(rng, kinds)
        return (first, second)
    return (random_np(rng, kinds, modified=True),)


def random_time(rng: random.Random, *, front: bool, end: bool) -> tuple[Word | None, bool]:
    """A time word or none, and whether it opens the sentence."""
    if not (front or end) or rng.random() >= 0.3:
        return None, False
    word = rng.choice([t for t in TIMES if front or "end" in t.kinds])
    return word, "end" not in word.kinds or not end or (front and rng.random() < 0.5)


def random_clause(rng: random.Random, verbs: tuple[Verb, ...], *, negation: bool, time_front: bool = False,
                  time_end: bool = False) -> Clause:
    verb = rng.choice(verbs)
    negated = negation and rng.random() < 0.2
    subject = random_subject(rng, verb.subject)
    recipient = None
    if verb.frame is Frame.DITRANSITIVE:  # definite when negated: "gibt dem Kind kein Buch"
        recipient = random_np(rng, RECIPIENTS, definite=negated)
    obj = None
    if verb.frame in (Frame.ACCUSATIVE, Frame.DATIVE, Frame.DITRANSITIVE):
        obj = random_np(rng, verb.objects, negated=negated)
    # With an object, a negated verb takes no place phrase: "nicht" would have no neutral position.
    pp = None
    if verb.preps and not (negated and verb.frame is not Frame.INTRANSITIVE) and (
            verb.pp_required or rng.random() < (0.6 if verb.frame is Frame.INTRANSITIVE else 0.2)):
        preposition = rng.choice(verb.preps)
        pp = PrepPhrase(preposition, random_np(rng, preposition.kinds))
    # "nicht" after a closing time word reads oddly ("sieht jeden Tag die Katze nicht"): only in front.
    time, time_first = random_time(rng, front=time_front, end=time_end and not negated)
    return Clause(subject, verb, recipient, obj, pp, negated, time, time_first)


# Templates: each returns the English words, the German words and the final punctuation.

def statement(rng: random.Random) -> tuple[list[str], list[str], str]:
    c = random_clause(rng, CLAUSE_VERBS, negation=True, time_front=True, time_end=True)
    return english_clause(c), german_clause(c, Order.VERB_SECOND), "."


def yes_no_question(rng: random.Random) -> tuple[list[str], list[str], str]:
    c = random_clause(rng, CLAUSE_VERBS, negation=False, time_end=True)
    return english_clause(c, question=True), german_clause(c, Order.VERB_FIRST), "?"


# Two-clause sentences: English and German conjunction, whether the subordinate clause comes first,
# and the verbs of the main clause.
CONJUNCTIONS = [("because", "weil", False, CLAUSE_VERBS), ("when", "wenn", True, CLAUSE_VERBS),
                ("if", "wenn", True, CLAUSE_VERBS), ("that", "dass", False, SAYING_VERBS)]


def two_clauses(rng: random.Random) -> tuple[list[str], list[str], str]:
    """"A because B." → "A, weil B." with B's verb last; "When B, A." → "Wenn B, A." with A's verb first,
    as the fronted clause fills the first position; "X says that B." → "X sagt, dass B."."""
    en_conjunction, de_conjunction, subordinate_first, main_verbs = rng.choice(CONJUNCTIONS)
    main = random_clause(rng, main_verbs, negation=True)
    sub = random_clause(rng, CLAUSE_VERBS, negation=True)
    en_sub = [en_conjunction] + english_clause(sub)
    de_sub = [de_conjunction] + german_clause(sub, Order.VERB_LAST)
    if subordinate_first:
        return en_sub + [","] + english_clause(main), de_sub + [","] + german_clause(main, Order.VERB_FIRST), "."
    return english_clause(main) + en_sub, german_clause(main, Order.VERB_SECOND) + [","] + de_sub, "."


TEMPLATES = (statement, yes_no_question, two_clauses)
TEMPLATE_WEIGHTS = (50, 20, 30)


def random_pair(rng: random.Random) -> tuple[str, str]:
    while True:
        english, german, end = rng.choices(TEMPLATES, TEMPLATE_WEIGHTS)[0](rng)
        en = sentence(english, end)
        if MIN_WORDS <= len(en.split()) <= MAX_WORDS:
            return en, sentence(german, end)


def generate_pairs(n: int, *, seed: int) -> list[tuple[str, str]]:
    """`n` (English, German) pairs; the same (n, seed) always gives the same list."""
    if n < 0:
        raise ValueError(f"n ({n}) must be non-negative")
    rng = random.Random(seed)
    return [random_pair(rng) for _ in range(n)]
