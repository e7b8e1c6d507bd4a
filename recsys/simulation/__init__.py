"""The synthetic live-commerce world: the default dataset with a planted answer key.

``simulate(SimConfig.from_preset("tiny"), out_dir)`` writes the six tables of
``recsys.data.schema`` (events in one part file per simulated day), the ground truth in
``truth/`` and ``manifest.json``. Same config and seed give byte-identical Parquet files
(only ``manifest.json`` differs, by its ``seconds``). Seed streams are
``SeedSequence(seed, spawn_key=k)`` with k = (0,) world, (1,) schedule, (2, day) each chunk.

Generative model (what drives what)
-----------------------------------
Users (``world.py``), C categories, u = one user:

* demographics: age band, gender, region drawn from fixed shares;
* interest ``I_u ~ Dirichlet(interest_concentration * normalise(g[gender] * a[age]))`` over
  categories, with per-category gender/age affinities (``catalog.py``): concentrated, so most
  users have 1-3 clear interests, and demographics predict them;
* purchasing power ``W_u = 150 * age_mult * region_mult * exp(0.7 z_u)`` yuan;
* price sensitivity ``s_u = sigmoid(logit(Beta(1.2, 1.2)) - 0.5 z_u)``: the rich care less;
* domestic-brand preference ``b_u ~ Beta(3, 2) + region shift`` clipped to [0, 1];
* body type (标准/小个子/大码/高个子), skin type (中性皮/敏感肌/油皮/干皮/混合皮);
* hour profile ``h_u = normalise(mix_u @ styles + 0.01)``, mix_u ~ Dirichlet over daytime, lunch,
  evening and late-night bell curves; activity ``a_u ~ lognormal`` with mean 1;
* trust: 1 + Binomial(2, 0.35) draws of a category (85 % from ``I_u``, else uniform) then a
  streamer of it with probability proportional to sqrt(KOL); trust ~ U(0.3, 1).
* user ids 0..N-1 are published only as ``pseudonymise(id, pseudonym_key)``.

Streamers: a category (every category first, then by demand), KOL strength ``k ~ lognormal(0,
1)``, follower count ``50000 k^1.2 * lognormal noise``, price tier, a catalogue of
``catalogue_size`` products of their category drawn with weight ``exp(-1.2 |tier_p - tier_s|)``.

Products: category, tier, imported with a tier-dependent share, a domestic or imported brand,
price ``median_c * tier_mult * exp(0.35 z)`` rounded to x.9, a third of body/skin-category
products suit one body/skin value, keywords = category tokens + 国货/进口 + tier word + attribute.

Schedule (``schedule.py``): regular weekly slots plus irregular sessions on off days, at most one
session per streamer-day, 08:00-23:30 starts, 1-4 h; products presented in contiguous segments
of about ``segment_minutes``; a random ``coupon_rate`` of segments drops a coupon (value in
``coupon_values``, at most half the price), independent of the audience.

Visits per day (``visits.py``): browsing intents ``Poisson(a_u * browse_rate * weekend)`` at an
hour from ``h_u`` for a category from ``(1 - explore) I_u + explore / C``, into a room of that
category live at that hour picked by popularity (KOL x session noise) x minutes live, kept with
``1 - exp(-cell popularity)``; loyalty visits to trusted streamers' sessions with
``1 - exp(-loyalty_rate * trust * a_u * weekend * hour_affinity)``; returns. Dwell is lognormal
with median ``150 s * (0.4 + 1.5 I + T)``, cut at the session end.

In the room (``behaviour.py``): likes, shares, comments (``comments.py``: attribute questions
reveal body/skin type, price questions grow with s_u), follows, and per presented product a
click (interest, trust, brand match, attribute match, price fit), a coupon claim with
``0.15 + 0.8 s_u``, a purchase with ``truth.purchase_probability`` (below), a cart, and a refund
for the paid amount 2 h + ~36 h later (more likely outside the user's interests).

Purchase given click (``truth.purchase_probability``)::

    logit = -5 + 2.5 I + 1.5 T + 1.0 (brand_match - 0.5) + 0.6 attr_match
            - 0.9 log(price / W_u) + [coupon > 0] s_u (0.5 + 6 min(coupon / price, 1))

amount = price - claimed coupon. Refunds carry no session (they happen after the live) and
fall in the chunk of their time; those after the last day are not written
(``manifest["refunds_after_end"]``).

Truth (``truth.py``): ``users`` (interests, top_interests, power, sensitivity, brand preference,
body/skin type, tags), ``trusted_streamers``, ``coupon_effect`` (per user and coupon value on
the user's reference product: top-interest category at its median price, untrusted streamer),
``streamers`` (kol_strength, price_tier 0 平价 / 1 中端 / 2 高端), ``products`` (price tier,
suited attribute) and ``coupon_drops`` (the randomised coupon treatment per segment).

Live rooms (``live_room.py``, read by ``recsys.liveroom``): ``live_room_day(world_dir, day)``
lays questions with planted intents (``questions.py``: paraphrases from parts, typos) and
planted engagement drops, attention spikes and question bursts over a written day, from its
own seed stream (3, day), with the answer key beside them; the world's files stay as written.
"""

from recsys.simulation.config import PRESETS, SimConfig
from recsys.simulation.runner import simulate
from recsys.simulation.truth import claim_probability, purchase_probability

__all__ = ["PRESETS", "SimConfig", "claim_probability", "purchase_probability", "simulate"]
