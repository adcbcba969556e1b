"""The module panel's Review section (Qt glue only; the work is SceneLogic's): each tissue shown or
hidden, fill opacity, fill and outline, window presets, the patient's height/weight/sex for SMI and
the flags, and Save report (PNG + PDF of the result as it is now)."""
from __future__ import annotations

import ctk
import qt

import slicer
from slicer.i18n import tr as _

from AdiposeSegLib.scene.display import WINDOW_PRESETS
from AdiposeSegLib.scene.segments import DEFAULT_FILL_OPACITY
from AdiposeSegLib.tissues import LABELS, NAMES


class ReviewPanel:
    def __init__(self, parentLayout, logic, volume, after_change):
        """`volume()` gives the selected CT; `after_change()` refreshes the panel's text and tables."""
        self.logic, self.volume, self.after_change = logic, volume, after_change
        self.box = ctk.ctkCollapsibleButton()
        self.box.text = _("Review")
        parentLayout.addWidget(self.box)
        form = qt.QFormLayout(self.box)

        row = qt.QHBoxLayout()
        self.shown = {}
        for label in LABELS:
            check = qt.QCheckBox(NAMES[label])
            check.checked = True
            check.toggled.connect(self.applyDisplay)
            row.addWidget(check)
            self.shown[NAMES[label]] = check
        form.addRow(_("Show:"), row)
        self.opacity = ctk.ctkSliderWidget()
        self.opacity.minimum, self.opacity.maximum, self.opacity.singleStep = 0.0, 1.0, 0.05
        self.opacity.value = DEFAULT_FILL_OPACITY
        self.opacity.valueChanged.connect(self.applyDisplay)
        form.addRow(_("Opacity:"), self.opacity)
        row = qt.QHBoxLayout()
        self.fill, self.outline = qt.QCheckBox(_("Fill")), qt.QCheckBox(_("Outline"))
        for check in (self.fill, self.outline):
            check.checked = True
            check.toggled.connect(self.applyDisplay)
            row.addWidget(check)
        form.addRow("", row)

        row = qt.QHBoxLayout()
        for name in WINDOW_PRESETS:
            button = qt.QPushButton(name)
            button.clicked.connect(lambda checked=False, preset=name: self.windowPreset(preset))
            row.addWidget(button)
        form.addRow(_("Window:"), row)

        row = qt.QHBoxLayout()
        self.height = qt.QDoubleSpinBox()
        self.height.setRange(0.0, 2.5)
        self.height.setDecimals(2)
        self.height.setSuffix(" m")
        self.height.setSpecialValueText(_("height"))   # 0 = not given
        self.weight = qt.QDoubleSpinBox()
        self.weight.setRange(0.0, 400.0)
        self.weight.setDecimals(1)
        self.weight.setSuffix(" kg")
        self.weight.setSpecialValueText(_("weight"))
        self.sex = qt.QComboBox()
        self.sex.addItems(["", "M", "F"])
        apply = qt.QPushButton(_("Apply"))
        apply.toolTip = _("SMI, SATI, VATI and BMI from the height; sarcopenia and myosteatosis flags with weight and sex")
        apply.clicked.connect(self.applyPatient)
        for widget in (self.height, self.weight, self.sex, apply):
            row.addWidget(widget)
        form.addRow(_("Patient:"), row)
        self.reportButton = qt.QPushButton(_("Save report (PNG + PDF)..."))
        self.reportButton.clicked.connect(self.saveReport)
        form.addRow("", self.reportButton)

    def _result(self):
        volume = self.volume()
        segmentation = self.logic.resultsForVolume(volume)[0] if volume is not None else None
        return volume, segmentation

    def applyDisplay(self, *args) -> None:
        _volume, segmentation = self._result()
        if segmentation is not None:
            self.logic.scene().setSegmentDisplay(segmentation, opacity=self.opacity.value, fill=self.fill.checked,
                                                 outline=self.outline.checked,
                                                 visible={name: check.checked for name, check in self.shown.items()})

    def windowPreset(self, name: str) -> None:
        volume = self.volume()
        if volume is not None:
            self.logic.scene().setWindowPreset(volume, name)

    def applyPatient(self) -> None:
        _volume, segmentation = self._result()
        if segmentation is None:
            return
        with slicer.util.tryWithErrorDisplay(_("The patient data were not taken."), waitCursor=True):
            self.logic.scene().setPatient(segmentation, self.height.value or None, self.weight.value or None,
                                          self.sex.currentText)
            self.after_change()

    def saveReport(self) -> None:
        volume, segmentation = self._result()
        if segmentation is None:
            return
        path = qt.QFileDialog.getSaveFileName(slicer.util.mainWindow(), _("Save the report"),
                                              f"{volume.GetName()}_report.png", "PNG (*.png)")
        if path:
            with slicer.util.tryWithErrorDisplay(_("The report could not be written."), waitCursor=True):
                written = self.logic.scene().saveReport(volume, segmentation, path)
                slicer.util.showStatusMessage(_("Report written: ") + ", ".join(written), 5000)
