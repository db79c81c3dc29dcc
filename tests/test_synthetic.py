"""The synthetic corpus: deterministic, varied, and rendering exactly the German a grammar book gives."""

from __future__ import annotations

import collections
import re
from dataclasses import replace

import pytest

from translate.synthetic import (A, ADJECTIVES, BARE, NO, NOUNS, NUMBERS, POSSESSIVES, PREPOSITIONS, PRONOUNS, THE,
                                 THIS, TIMES, VERBS, Case, Clause, NounPhrase, Order, PrepPhrase, english_clause,
                                 generate_pairs, german_clause, german_np, german_pp, sentence)


@pytest.fixture(scope="module")
def corpus() -> list[tuple[str, str]]:
    return generate_pairs(10_000, seed=11)


def np(det, noun: str, adjective: str | None = None, *, plural: bool = False) -> NounPhrase:
    return NounPhrase(det, NOUNS[noun], plural, ADJECTIVES[adjective] if adjective else None)


def verb(en: str, de_plural: str):
    """The verb with this English base form and German plural (two verbs translate "eat")."""
    return next(v for v in VERBS if v.en == en and de_plural in v.de.values())


def de(phrase: NounPhrase, case: Case) -> str:
    return " ".join(german_np(phrase, case))


def words(ws: list[str]) -> str:
    return " ".join(w for w in ws if w)


TODAY = next(t for t in TIMES if t.en == "today")
HE, WE = PRONOUNS[1], PRONOUNS[3]
OUR = next(p for p in POSSESSIVES if p.en == "our")


# Determinism and shape ------------------------------------------------------------------------------

def test_same_n_and_seed_give_the_same_pairs():
    assert generate_pairs(300, seed=7) == generate_pairs(300, seed=7)


def test_different_seeds_give_different_sentences():
    a, b = generate_pairs(2000, seed=1), generate_pairs(2000, seed=2)
    assert a != b
    assert len({en for en, _ in a} & {en for en, _ in b}) < 0.05 * len(a)


@pytest.mark.parametrize("n", [0, 1, 37])
def test_returns_n_non_empty_sentences(n):
    pairs = generate_pairs(n, seed=3)
    assert len(pairs) == n
    for en, de_ in pairs:
        assert en.strip() and de_.strip()
        assert en[0].isupper() and de_[0].isupper()
        assert en[-1] in ".?" and de_[-1] == en[-1]
        assert "  " not in en + de_ and " ," not in en + de_


def test_negative_n_is_an_error():
    with pytest.raises(ValueError):
        generate_pairs(-1, seed=0)


# Noun phrases: articles, adjective endings, dative plural, contractions --------------------------------

def test_definite_article_takes_weak_adjective_endings():
    assert de(np(THE, "dog", "big"), Case.NOM) == "der große Hund"
    assert de(np(THE, "dog", "big"), Case.ACC) == "den großen Hund"
    assert de(np(THE, "dog", "big"), Case.DAT) == "dem großen Hund"
    assert de(np(THE, "cup", "red"), Case.ACC) == "die rote Tasse"
    assert de(np(THE, "car", "red"), Case.NOM) == "das rote Auto"
    assert de(np(THE, "dog", "big", plural=True), Case.NOM) == "die großen Hunde"


def test_indefinite_article_takes_mixed_adjective_endings():
    assert de(np(A, "dog", "big"), Case.NOM) == "ein großer Hund"
    assert de(np(A, "dog", "big"), Case.ACC) == "einen großen Hund"
    assert de(np(A, "car", "red"), Case.ACC) == "ein rotes Auto"
    assert de(np(A, "cup", "red"), Case.DAT) == "einer roten Tasse"
    assert de(np(OUR, "bag", "blue"), Case.DAT) == "unserer blauen Tasche"


def test_no_determiner_or_number_takes_strong_adjective_endings():
    assert de(np(BARE, "dog", "big", plural=True), Case.NOM) == "große Hunde"
    assert de(np(NUMBERS[0], "dog", "big", plural=True), Case.ACC) == "zwei große Hunde"
    assert de(np(NUMBERS[0], "dog", "big", plural=True), Case.DAT) == "zwei großen Hunden"


def test_kein_and_dieser():
    assert de(np(NO, "dog"), Case.ACC) == "keinen Hund"
    assert de(np(NO, "car", "red"), Case.ACC) == "kein rotes Auto"
    assert de(np(NO, "dog", "big", plural=True), Case.ACC) == "keine großen Hunde"
    assert de(np(THIS, "house", "old"), Case.DAT) == "diesem alten Haus"
    assert de(np(THIS, "bridge", plural=True), Case.DAT) == "diesen Brücken"


def test_adjective_stem_in_e_and_dative_plural_n():
    assert de(np(THE, "dog", "tired"), Case.ACC) == "den müden Hund"
    assert de(np(THE, "child", plural=True), Case.DAT) == "den Kindern"
    assert de(np(THE, "car", plural=True), Case.DAT) == "den Autos"  # -s plurals take no -n
    assert de(np(THE, "woman", plural=True), Case.DAT) == "den Frauen"


def test_dative_prepositions_and_contractions():
    with_ = PREPOSITIONS["with"]
    assert words(german_pp(PrepPhrase(with_, np(NUMBERS[0], "child", "small", plural=True)))) == \
        "mit zwei kleinen Kindern"
    assert words(german_pp(PrepPhrase(with_, np(THE, "child", "small", plural=True)))) == "mit den kleinen Kindern"
    assert words(german_pp(PrepPhrase(PREPOSITIONS["in"], np(THE, "house", "big")))) == "im großen Haus"
    assert words(german_pp(PrepPhrase(PREPOSITIONS["in"], np(THE, "kitchen")))) == "in der Küche"
    assert words(german_pp(PrepPhrase(PREPOSITIONS["in"], np(POSSESSIVES[0], "garden")))) == "in meinem Garten"
    assert words(german_pp(PrepPhrase(PREPOSITIONS["from"], np(THE, "teacher")))) == "vom Lehrer"
    assert words(german_pp(PrepPhrase(PREPOSITIONS["under"], np(THE, "table")))) == "unter dem Tisch"


# Clauses: agreement, word order, negation -----------------------------------------------------------

def render(c: Clause, order: Order = Order.VERB_SECOND, *, question: bool = False) -> tuple[str, str]:
    end = "?" if question else "."
    return sentence(english_clause(c, question=question), end), sentence(german_clause(c, order), end)


SEE = verb("see", "sehen")


def test_subject_verb_object():
    c = Clause((np(THE, "dog", "big"),), SEE, obj=np(A, "car", "red"))
    assert render(c) == ("The big dog sees a red car.", "Der große Hund sieht ein rotes Auto.")


def test_verb_second_after_a_fronted_time_word():
    c = Clause((np(THE, "dog"),), SEE, obj=np(THE, "car"), time=TODAY, time_first=True)
    assert render(c) == ("Today the dog sees the car.", "Heute sieht der Hund das Auto.")
    c = Clause((np(THE, "dog"),), SEE, obj=np(THE, "car"), time=TODAY)
    assert render(c) == ("The dog sees the car today.", "Der Hund sieht heute das Auto.")


def test_yes_no_question_puts_the_verb_first():
    c = Clause((np(THE, "dog"),), SEE, obj=np(THE, "car"))
    assert render(c, Order.VERB_FIRST, question=True) == ("Does the dog see the car?", "Sieht der Hund das Auto?")
    c = Clause((np(THE, "child", plural=True),), verb("sleep", "schlafen"),
               pp=PrepPhrase(PREPOSITIONS["in"], np(THE, "garden")))
    assert render(c, Order.VERB_FIRST, question=True) == \
        ("Do the children sleep in the garden?", "Schlafen die Kinder im Garten?")


def test_negation_nicht_after_a_definite_object_kein_for_an_indefinite_one():
    c = Clause((np(THE, "dog"),), SEE, obj=np(THE, "car"), negated=True)
    assert render(c) == ("The dog does not see the car.", "Der Hund sieht das Auto nicht.")
    c = Clause((WE,), SEE, obj=np(NO, "cat", plural=True), negated=True)
    assert render(c) == ("We do not see any cats.", "Wir sehen keine Katzen.")
    c = Clause((np(THE, "child"),), verb("play", "spielen"), pp=PrepPhrase(PREPOSITIONS["with"], np(THE, "dog")),
               negated=True)
    assert render(c) == ("The child does not play with the dog.", "Das Kind spielt nicht mit dem Hund.")


def test_agreement_and_stem_changes():
    eat, feed = verb("eat", "essen"), verb("eat", "fressen")
    assert render(Clause((PRONOUNS[0],), eat, obj=np(A, "apple"))) == ("I eat an apple.", "Ich esse einen Apfel.")
    assert render(Clause((HE,), eat, obj=np(A, "apple"))) == ("He eats an apple.", "Er isst einen Apfel.")
    assert render(Clause((np(THE, "horse"),), feed, obj=np(A, "apple"))) == \
        ("The horse eats an apple.", "Das Pferd frisst einen Apfel.")
    both = (np(THE, "dog"), np(A, "cat"))
    assert render(Clause(both, verb("sleep", "schlafen"))) == \
        ("The dog and a cat sleep.", "Der Hund und eine Katze schlafen.")


def test_dative_and_ditransitive_verbs():
    c = Clause((np(THE, "man"),), verb("help", "helfen"), obj=np(THE, "child", plural=True))
    assert render(c) == ("The man helps the children.", "Der Mann hilft den Kindern.")
    c = Clause((np(THE, "woman"),), verb("give", "geben"), recipient=np(THE, "child"), obj=np(A, "apple"))
    assert render(c) == ("The woman gives the child an apple.", "Die Frau gibt dem Kind einen Apfel.")
    c = replace(c, negated=True, obj=np(NO, "apple"))
    assert render(c) == ("The woman does not give the child an apple.", "Die Frau gibt dem Kind keinen Apfel.")


def test_separable_verb_and_verb_last_subordinate_clause():
    call = verb("call", "rufen")
    c = Clause((PRONOUNS[0],), call, obj=np(THE, "teacher"))
    assert render(c) == ("I call the teacher.", "Ich rufe den Lehrer an.")
    sub = Clause((np(THE, "dog"),), SEE, obj=np(THE, "cat"), negated=True)
    main = Clause((HE,), call, obj=np(THE, "teacher"), negated=True)
    en = english_clause(main) + ["because"] + english_clause(sub)
    de_ = german_clause(main, Order.VERB_SECOND) + [",", "weil"] + german_clause(sub, Order.VERB_LAST)
    assert sentence(en, ".") == "He does not call the teacher because the dog does not see the cat."
    assert sentence(de_, ".") == "Er ruft den Lehrer nicht an, weil der Hund die Katze nicht sieht."
    assert words(german_clause(main, Order.VERB_LAST)) == "er den Lehrer nicht anruft"


def test_a_fronted_subordinate_clause_puts_the_main_verb_first():
    sub = Clause((np(THE, "dog"),), verb("sleep", "schlafen"))
    main = Clause((np(THE, "cat"),), verb("play", "spielen"))
    de_ = ["wenn"] + german_clause(sub, Order.VERB_LAST) + [","] + german_clause(main, Order.VERB_FIRST)
    assert sentence(de_, ".") == "Wenn der Hund schläft, spielt die Katze."


# The corpus as a whole ------------------------------------------------------------------------------

def test_every_template_occurs(corpus):
    german = [de_ for _, de_ in corpus]
    for marker in [", weil ", ", dass ", "Wenn ", " nicht", " kein", "?"]:
        assert any(marker in s for s in german), marker
    assert any(s.startswith(("Heute ", "Oft ", "Manchmal ", "Jetzt ")) for s in german)


def test_the_translation_is_a_function_of_the_english(corpus):
    translations = collections.defaultdict(set)
    for en, de_ in corpus:
        translations[en].add(de_)
    assert all(len(german) == 1 for german in translations.values())


def test_vocabulary_is_small_and_closed(corpus):
    def types(side: int) -> set[str]:
        return {w.lower() for pair in corpus for w in re.findall(r"\w+", pair[side])}
    assert 150 <= len(types(0)) <= 320
    assert 250 <= len(types(1)) <= 650


def test_sentence_lengths(corpus):
    en_lengths = [len(en.split()) for en, _ in corpus]
    assert min(en_lengths) >= 3 and max(en_lengths) <= 15
    assert 6 <= sum(en_lengths) / len(en_lengths) <= 11
    de_lengths = [len(de_.split()) for _, de_ in corpus]
    assert 6 <= sum(de_lengths) / len(de_lengths) <= 11


def test_sentences_are_mostly_distinct(corpus):
    assert len({en for en, _ in corpus[:5000]}) >= 0.95 * 5000
