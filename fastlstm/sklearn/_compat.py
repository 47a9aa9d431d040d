"""What differs between the scikit-learn versions the estimators support (>= 1.3): the feature
checks of 2-D X (validate_data, public from 1.6; the estimator's own methods before) and the
estimator tags (__sklearn_tags__ from 1.6; _more_tags before)."""
import sklearn

#: scikit-learn's (major, minor)
VERSION = tuple(int(part) for part in sklearn.__version__.split(".")[:2])

#: the checks of sklearn.utils.estimator_checks.check_estimator that cannot apply to these
#: estimators, with the reason: check_estimator(est, expected_failed_checks=XFAIL_CHECKS)
#: (scikit-learn >= 1.6), or the _xfail_checks tag before
XFAIL_CHECKS = {}


def check_table_features(est, X, *, reset):
    """scikit-learn's checks of a 2-D X's columns: with reset, set n_features_in_ (and
    feature_names_in_ for a DataFrame with string column names); without, a ValueError when
    the number of columns differs ("X has 9 features, but SequenceClassifier is expecting 10
    features as input") and scikit-learn's warnings or errors when the feature names differ.
    """
    if VERSION >= (1, 6):
        from sklearn.utils.validation import validate_data

        validate_data(est, X, reset=reset, skip_check_array=True)
    else:                                                   # pragma: no cover (< 1.6)
        est._check_feature_names(X, reset=reset)
        est._check_n_features(X, reset=reset)


def forget_feature_names(est):
    """A new fit on X without feature names (a 3-D array, a list): drop feature_names_in_."""
    est.__dict__.pop("feature_names_in_", None)


def sequence_tags(tags, *, multi_output=False):
    """The tags of a fitted-on-sequences estimator (scikit-learn >= 1.6): 3-D X is accepted,
    and multi-output targets for the regressor."""
    tags.input_tags.three_d_array = True
    if multi_output:
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
    return tags


def more_tags(*, multi_output=False):
    """The same tags for scikit-learn < 1.6 (_more_tags)."""
    tags = {"3darray": True, "_xfail_checks": dict(XFAIL_CHECKS)}
    if multi_output:
        tags["multioutput"] = True
    return tags
