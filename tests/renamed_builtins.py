"""The built-in components registered under other names by one test plugin (see
tests/test_profile.py): the engine must run them exactly as it runs the built-ins."""

from mlcoord.api import hookimpl

from mlcoord_attention import Attention, AttentionOptions
from mlcoord_bayes import BayesCalibrator, BayesOptions
from mlcoord_dca import DCAOptions, DCAPlanner
from mlcoord_exits import ExitManager, ExitOptions
from mlcoord_hedging import HedgingGuard, HedgingOptions
from mlcoord_lstm import Lstm, LstmOptions
from mlcoord_mtf import MtfOptions, MultiTimeframeFusion
from mlcoord_protections import Protections, ProtectionsOptions
from mlcoord_risk import RiskManager, RiskOptions
from mlcoord_rl_selector import RLSelector, RLSelectorOptions
from mlcoord_technical import Technical, TechnicalOptions

MLCOORD_HOOKS_VERSION = 2
PREFIX = "my_"


@hookimpl
def register_signal_sources(register):
    register(PREFIX + "technical", Technical, options=TechnicalOptions)


@hookimpl
def register_ml_components(register):
    register(PREFIX + "attention", Attention, options=AttentionOptions)
    register(PREFIX + "lstm", Lstm, options=LstmOptions)
    register(PREFIX + "mtf", MultiTimeframeFusion, options=MtfOptions)
    register(PREFIX + "rl_selector", RLSelector, options=RLSelectorOptions)


@hookimpl
def register_calibrators(register):
    register(PREFIX + "bayes", BayesCalibrator, options=BayesOptions)


@hookimpl
def register_entry_planners(register):
    register(PREFIX + "dca", DCAPlanner, options=DCAOptions)


@hookimpl
def register_sizers(register):
    register(PREFIX + "risk", RiskManager, options=RiskOptions)


@hookimpl
def register_exit_managers(register):
    register(PREFIX + "exits", ExitManager, options=ExitOptions)


@hookimpl
def register_entry_guards(register):
    register(PREFIX + "protections", Protections, options=ProtectionsOptions)


@hookimpl
def register_portfolio_watchers(register):
    register(PREFIX + "hedging", HedgingGuard, options=HedgingOptions)
    register(PREFIX + "protections", Protections, options=ProtectionsOptions)
