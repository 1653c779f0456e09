"""Authenticity rules on realistic French and English share texts."""

import pytest

from distribution.models.authenticity import (
    AuthenticityPolicy, check_authenticity, jaccard, minhash, minhash_similarity, normalized_words,
    score_authenticity, shingles,
)
from distribution.models.sharing import Refusal

pytestmark = pytest.mark.unit
DEFAULTS = AuthenticityPolicy()

# A French and English corpus: suggested texts and what employees typically make of them. Each case is
# (label, suggested, candidate, expected): "copy" must be refused with the default thresholds, "own" accepted.
# The README justifies the default thresholds from the scores of this corpus.
EN_PLANT = ("We are proud to announce that our new plant in Lyon is now running on 100% renewable energy. "
            "This is a major step towards our goal of carbon neutrality by 2030. Thanks to all the teams who "
            "made this possible! Read more about our commitment: https://example.com/green #sustainability")
EN_HIRING = ("Our engineering team in Manchester is growing! We are looking for backend developers who love "
             "clean code, distributed systems and mentoring. Hybrid work, a learning budget and real ownership "
             "of what you build. Apply now and join us: https://example.com/jobs #hiring #tech")
FR_JOBS = ("Nous recrutons ! Notre équipe data à Nantes cherche trois ingénieurs pour construire la plateforme "
           "de demain. Télétravail partiel, formation continue et un vrai impact sur nos clients. Postulez dès "
           "aujourd'hui : https://example.com/jobs #recrutement #data")
FR_EVENT = ("Retour en images sur notre convention annuelle à Bordeaux : deux jours d'ateliers, de rencontres et "
            "d'échanges avec nos clients et partenaires. Merci à toutes les équipes pour leur énergie et à nos "
            "intervenants pour la qualité de leurs présentations. Rendez-vous l'an prochain ! #convention2026")

CASES = [
    # --- near-copies: must be refused -------------------------------------------------------
    ("en identical", EN_PLANT, EN_PLANT, "copy"),
    ("en case, punctuation, hashtag and link changed", EN_PLANT,
     "WE ARE PROUD TO ANNOUNCE that our new plant in Lyon is now running on 100 % renewable energy... This is a "
     "major step towards our goal of carbon neutrality by 2030; thanks to all the teams who made this possible. "
     "Read more about our commitment https://example.com/other #green #proud", "copy"),
    ("en light edits", EN_PLANT,
     "We're proud to announce that our new plant in Lyon now runs on 100% renewable energy. This is a major "
     "step toward our goal of carbon neutrality by 2030. Thanks to all the teams who made it possible! "
     "Read more about our commitment: https://example.com/green", "copy"),
    ("en sentences reordered", EN_PLANT,
     "Thanks to all the teams who made this possible! This is a major step towards our goal of carbon "
     "neutrality by 2030. We are proud to announce that our new plant in Lyon is now running on 100% "
     "renewable energy. Read more about our commitment: https://example.com/green", "copy"),
    ("en short personal line added", EN_PLANT,
     "So happy to share this news! " + EN_PLANT, "copy"),
    ("en hiring light edits", EN_HIRING,
     "My engineering team in Manchester is growing! We are looking for backend developers who love clean code, "
     "distributed systems and mentoring. Hybrid work, a learning budget and real ownership of what you build. "
     "Apply now and join us!", "copy"),
    ("fr identique sans accents", FR_JOBS,
     "Nous recrutons ! Notre equipe data a Nantes cherche trois ingenieurs pour construire la plateforme de "
     "demain. Teletravail partiel, formation continue et un vrai impact sur nos clients. Postulez des "
     "aujourd'hui : https://example.com/jobs", "copy"),
    ("fr retouches légères", FR_JOBS,
     "On recrute ! Notre équipe data à Nantes cherche 3 ingénieurs pour construire la plateforme de demain. "
     "Télétravail partiel, formation continue et un vrai impact sur nos clients. Postulez dès maintenant : "
     "https://example.com/jobs #recrutement", "copy"),
    ("fr phrases réordonnées", FR_EVENT,
     "Merci à toutes les équipes pour leur énergie et à nos intervenants pour la qualité de leurs "
     "présentations. Retour en images sur notre convention annuelle à Bordeaux : deux jours d'ateliers, de "
     "rencontres et d'échanges avec nos clients et partenaires. Rendez-vous l'an prochain !", "copy"),
    ("fr courte ligne perso ajoutée", FR_EVENT,
     "Quelle belle édition ! " + FR_EVENT, "copy"),
    # --- personalised: must be accepted --------------------------------------------------------
    ("en own words", EN_PLANT,
     "I visited our Lyon site last month and watched the solar panels go up. Today the whole plant runs on "
     "renewable power, and honestly it makes me proud to work here. Carbon neutral by 2030 is ambitious, but "
     "this shows we mean it. #sustainability", "own"),
    ("en personal story plus one quoted sentence", EN_PLANT,
     "When I joined eight years ago, our energy bill was mostly coal and gas. I have spent the last two years "
     "on the retrofit project with an amazing crew of electricians and planners, and we hit the target three "
     "weeks early. Our new plant in Lyon is now running on 100% renewable energy. Next stop: our warehouses.",
     "own"),
    ("en hiring in own words", EN_HIRING,
     "I've been a backend developer in our Manchester office for three years. What I like most: people review "
     "each other's code kindly, and juniors get real mentoring. We now need more hands on our distributed "
     "systems. If that sounds like you, send me a message or apply here. #hiring", "own"),
    ("en translated to french", EN_PLANT,
     "Nous sommes fiers d'annoncer que notre nouvelle usine de Lyon fonctionne désormais à 100 % avec des "
     "énergies renouvelables. C'est une étape majeure vers notre objectif de neutralité carbone d'ici 2030. "
     "Merci à toutes les équipes qui ont rendu cela possible !", "own"),
    ("fr traduit en anglais", FR_JOBS,
     "We are hiring! Our data team in Nantes is looking for three engineers to build tomorrow's platform. "
     "Partial remote work, continuous training and real impact for our clients. Apply today!", "own"),
    ("fr avec ses propres mots", FR_JOBS,
     "Ça fait deux ans que je travaille dans l'équipe data à Nantes et je ne m'en lasse pas : des sujets "
     "passionnants, des collègues bienveillants et du temps pour apprendre. On cherche trois personnes pour "
     "nous rejoindre, n'hésitez pas à m'écrire si vous voulez en savoir plus ! #recrutement", "own"),
    ("fr témoignage convention", FR_EVENT,
     "J'ai animé mon tout premier atelier à la convention de Bordeaux cette année, un peu stressée au début "
     "mais les échanges avec les clients étaient passionnants. Je repars avec plein d'idées pour notre "
     "produit. Merci à l'équipe événementielle pour l'organisation impeccable ! #convention2026", "own"),
    ("fr long paragraphe perso puis une phrase reprise", FR_EVENT,
     "Deux jours intenses à Bordeaux avec mes collègues du support : on a présenté nos nouveaux outils à une "
     "cinquantaine de clients, recueilli beaucoup de retours et même réglé deux tickets en direct pendant la "
     "pause café. Ce genre de rencontre me rappelle pourquoi j'aime ce métier. Rendez-vous l'an prochain !",
     "own"),
]

# Colleagues: a personalised post already confirmed, and what a second colleague does with it.
COLLEAGUE_POST = CASES[10][2]
COLLEAGUE_CASES = [
    ("copies a colleague's personal post with light edits",
     "I visited our Lyon site last month and watched the solar panels go up! Today the whole plant runs on "
     "renewable power and it makes me really proud to work here. Carbon neutral by 2030 is ambitious, but "
     "this shows we mean it.", "copy"),
    ("writes their own", "Our facilities team did something remarkable in Lyon: no more fossil energy for the "
     "whole plant. I work in procurement and saw how hard it was to source the panels. Well done, everyone!",
     "own"),
]


def test_normalisation_drops_case_accents_punctuation_urls_and_hashtags():
    words = normalized_words("Équipe RÉUSSITE ! Voir https://x.io/a?b=1 et www.acme.fr #fierté @Acme, l'été.")
    assert words == ["equipe", "reussite", "voir", "et", "l", "ete"]


def test_normalisation_removes_required_phrases():
    assert normalized_words("Great news. Employee of Acme", ignore=("employee of acme",)) == ["great", "news"]


def test_jaccard_of_identical_and_disjoint_sets():
    a = shingles(normalized_words("one two three four"))
    assert jaccard(a, a) == 1.0
    assert jaccard(a, shingles(normalized_words("five six seven"))) == 0.0
    assert jaccard(set(), a) == 0.0


def test_minhash_estimates_jaccard():
    a = shingles(normalized_words(CASES[0][1]))
    b = shingles(normalized_words(CASES[3][2]))
    exact = jaccard(a, b)
    assert abs(minhash_similarity(minhash(a), minhash(b)) - exact) < 0.15
    assert minhash_similarity(minhash(a), minhash(a)) == 1.0


@pytest.mark.parametrize(("label", "suggested", "candidate", "expected"), CASES, ids=[c[0] for c in CASES])
def test_corpus_against_suggested_text(label, suggested, candidate, expected):
    scores = score_authenticity(candidate, [suggested], [])
    if expected == "copy":
        with pytest.raises(Refusal) as refused:
            check_authenticity(scores, DEFAULTS)
        assert refused.value.rule == "too_similar_to_suggested"
        assert refused.value.score == scores.to_suggested > refused.value.threshold == 0.4
    else:
        check_authenticity(scores, DEFAULTS)
        assert scores.personalized(DEFAULTS)


@pytest.mark.parametrize(("label", "candidate", "expected"), COLLEAGUE_CASES, ids=[c[0] for c in COLLEAGUE_CASES])
def test_corpus_against_colleagues(label, candidate, expected):
    colleague = minhash(shingles(normalized_words(COLLEAGUE_POST)))
    scores = score_authenticity(candidate, ["An unrelated suggested text about something else entirely."],
                                [colleague])
    if expected == "copy":
        with pytest.raises(Refusal) as refused:
            check_authenticity(scores, DEFAULTS)
        assert refused.value.rule == "too_similar_to_colleagues"
        assert "colleague" in refused.value.message
    else:
        check_authenticity(scores, DEFAULTS)


def test_closest_suggested_text_counts():
    scores = score_authenticity(CASES[0][1], ["Something else entirely, in other words.", CASES[0][1]], [])
    assert scores.to_suggested == 1.0


def test_flag_policy_lets_a_near_copy_through_but_not_as_personalised():
    policy = AuthenticityPolicy(near_copy_action="flag")
    scores = score_authenticity(CASES[0][1], [CASES[0][1]], [])
    check_authenticity(scores, policy)
    assert not scores.personalized(policy)


def test_refusal_message_is_in_plain_words():
    with pytest.raises(Refusal) as refused:
        check_authenticity(score_authenticity(CASES[0][1], [CASES[0][1]], []), DEFAULTS)
    assert "100% identical to the suggested text" in refused.value.message
    assert "own words" in refused.value.message


def test_signatures_are_stable_across_processes():
    # Stored signatures are compared with ones computed later, by other processes and releases: the
    # permutations (seed, scheme) and the hash must not depend on the process (e.g. on PYTHONHASHSEED).
    import json
    import os
    import subprocess
    import sys

    text = CASES[0][1]
    here = minhash(shingles(normalized_words(text)))
    code = ("import json, sys; from distribution.models.authenticity import minhash, normalized_words, shingles; "
            "print(json.dumps(minhash(shingles(normalized_words(sys.argv[1])))))")
    elsewhere = subprocess.run([sys.executable, "-c", code, text], env={**os.environ, "PYTHONHASHSEED": "4242"},
                               capture_output=True, check=True, text=True).stdout
    assert json.loads(elsewhere) == here
    assert len(here) == 128 and here[:4] == [16660067, 48500511, 7960199, 82878044]  # the stored format
