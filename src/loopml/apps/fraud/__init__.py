"""Reference system 2: real-time card-fraud scoring, released through shadow and canary.

A seeded transaction simulator (with account takeover, card testing and merchant collusion, and
chargebacks that arrive days later), user features from the feature store, a LightGBM model and the
endpoint ``fraud``. ``run_fraud_story`` trains v1, serves it, replays traffic, trains v2, shadows it,
canaries it, promotes it, and shows a broken v3 rolled back without a failed request.
"""

from loopml.apps.fraud.config import FraudConfig
from loopml.apps.fraud.simulate import Simulated, simulate
from loopml.apps.fraud.story import FraudStoryResult, run_fraud_story

__all__ = ["FraudConfig", "FraudStoryResult", "Simulated", "run_fraud_story", "simulate"]
