"""The feature store: definitions in Python, point-in-time training frames, online serving, pushes, audits.

from loopml.features import Entity, FeatureView, FeatureStore
user = Entity("user", join_key="user_id")
stats = FeatureView("user_stats", entity=user, features={"clicks_7d": "int"}, source="clicks.parquet",
                    ttl=timedelta(days=7))
fs = lm.features; fs.register(user, stats)
train = fs.training_frame(labels, ["user_stats:clicks_7d"])        # point-in-time, no leakage
fs.materialize(); fs.online_features({"user_id": [1, 2]}, ["user_stats:clicks_7d"])
"""

from loopml.features.definitions import (
    DatasetSource,
    Entity,
    FeatureView,
    FrameSource,
    OnDemandFeature,
    ParquetSource,
    Source,
    SqlSource,
)
from loopml.features.materialize import materialize_step
from loopml.features.models import (
    EntityInfo,
    FeatureSkew,
    FeatureStats,
    FeatureViewInfo,
    FeatureViewVersion,
    MaterialisationResult,
    OnlineFeatures,
    PushResult,
    SkewReport,
    UsageAudit,
    ViewSkew,
)
from loopml.features.store import FeatureStore

__all__ = [
    "DatasetSource",
    "Entity",
    "EntityInfo",
    "FeatureSkew",
    "FeatureStats",
    "FeatureStore",
    "FeatureView",
    "FeatureViewInfo",
    "FeatureViewVersion",
    "FrameSource",
    "MaterialisationResult",
    "OnDemandFeature",
    "OnlineFeatures",
    "ParquetSource",
    "PushResult",
    "SkewReport",
    "Source",
    "SqlSource",
    "UsageAudit",
    "ViewSkew",
    "materialize_step",
]
