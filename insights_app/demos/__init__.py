"""The demos ``insights-app --demo NAME`` serves, each trained once and cached (nothing is downloaded).

- ``digits`` (the default): a fastai CNN on scikit-learn's digits;
- ``tabular``: a fastai tabular learner on scikit-learn's breast cancer data;
- ``text``: a torch classifier of the topic of standard-library docstring sentences.

Each module has ``demo_visualizer()`` (for a notebook: ``demo_visualizer().render()``) and
``demo_source()``; ``cache`` holds what they share (the cache folder and its files' class).
"""
