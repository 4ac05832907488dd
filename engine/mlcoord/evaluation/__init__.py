"""The yardstick of ``mlcoord evaluate`` (issue 12), one concern per module.

* :mod:`.metrics`   - the scores of one row (n, AUC, log-loss and its skill against two
  climatologies, Brier, ECE on 10 equal-width and 15 equal-mass bins);
* :mod:`.bootstrap` - weekly-block bootstrap intervals (symbols resampled together);
* :mod:`.labels`    - what is scored: the learning event or the engine's trade label, and the
  trade label's causal climatology;
* :mod:`.baselines` - what the ML stack must beat: climatologies, logistic regression and
  gradient boosting on the components' own feature matrix, "fade the last 24 h move";
* :mod:`.voter`     - the logistic baseline as an ML voter, for the trading arm that uses it;
* :mod:`.arms`      - the trading arms compared on the same windows;
* :mod:`.holdout`   - the development / holdout split by time and the holdout log;
* :mod:`.export`    - every scored prediction as a Parquet file;
* :mod:`.tables`    - the tables on screen and in the README.
"""
