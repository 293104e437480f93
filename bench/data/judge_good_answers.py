"""Hand-written good answers for the judge calibration set: (domain, task_type, seed-pack index in its cell, answer).

Each answers its seed prompt the way a careful scientist would: content of its own, the context used where
one is given, quantities with units, controls and readouts. bench/make_judge_calibration.py pairs each with
bad answers of every kind.
"""

GOOD = [
    ("biology", "hypothesis", 0, """1. Chemical cue sensing: the bacteria detect fungal metabolites such as N-acetylglucosamine released from fungal cell walls, which derepresses the antibiotic gene cluster. Prediction: adding 1 mM N-acetylglucosamine to a pure culture raises antibiotic titre at least 2-fold, measured by HPLC.
2. Nutrient competition: fungi deplete phosphate, and phosphate starvation triggers secondary metabolism. Prediction: bacteria grown in low-phosphate medium (0.1 mM) without fungi produce as much antibiotic as co-cultures, while phosphate supplementation abolishes the co-culture boost.
3. Contact-dependent signalling: hyphae must touch the colony. Prediction: separating bacteria and fungus by a 0.4 µm membrane removes the induction, seen as a smaller inhibition zone than in direct co-culture."""),
    ("biology", "hypothesis", 5, """Hypothesis 1: The tolerant grass has guard cells that respond faster to abscisic acid (ABA). Prediction: after feeding 10 µM ABA through the petiole, stomatal conductance of the tolerant species falls by half within 5 min versus 15 min in the sensitive species, measured by porometry.

Hypothesis 2: Its guard cells are smaller, so less ion efflux is needed to close them. Prediction: guard-cell length measured on epidermal peels correlates with closing half-time across 20 plants of each species.

Hypothesis 3: Faster anion channel (SLAC1-type) activity. Prediction: patch-clamp recordings show larger anion currents in tolerant guard-cell protoplasts, and a channel blocker slows its closure to the sensitive rate."""),
    ("biology", "hypothesis", 6, """1. Early blooms coincide with the Daphnia reproductive peak, so juveniles starve on inedible cyanobacterial colonies. Falsify: feed juveniles cyanobacteria versus green algae in June mesocosms; if survival is equal, the hypothesis fails.
2. Early-season cyanobacteria produce more microcystin before nitrogen runs out. Falsify: measure toxin concentration (µg/L) in early and late blooms of equal density; similar toxin levels would reject it.
3. Daphnia clones adapt to toxins over the summer, so late blooms meet tolerant populations. Falsify: collect Daphnia in May and August and expose both to the same toxic strain for 48 h; equal mortality would refute adaptation."""),
    ("biology", "methodology", 2, """1. Select 12 remnant patches of the wildflower spanning 0.5 to 50 ha, with isolation measured as distance to the nearest patch from satellite maps; include 3 sites inside continuous habitat as the unfragmented reference.
2. In each patch mark 20 flowering plants and record pollinator visits in 15-min timed watches between 09:00 and 16:00 on 6 sunny days per site.
3. Identify visitors to bee, fly or butterfly group and count flowers open per plant so visitation is expressed per flower per hour.
4. Fit a mixed model of visitation rate against patch area and isolation, with site as a random effect and date as a covariate.
5. Check seed set on 10 bagged versus open plants per site to link visits to pollination outcome."""),
    ("biology", "methodology", 7, """Because the level rises tenfold in heat shock without more promoter activity, the question is whether the mRNA is stabilised.
1. Grow cultures in LB at 37 °C to OD600 0.4; shift half to 42 °C for 10 min (heat shock), keep half at 37 °C as the control.
2. Add rifampicin (200 µg/mL) to block new transcription and take samples at 0, 1, 2, 4, 8 and 12 min into RNAprotect.
3. Extract RNA and quantify the transcript by RT-qPCR, normalised to a stable RNA such as 5S rRNA; run three biological replicates.
4. Fit an exponential decay to obtain the half-life at each temperature and compare with a t-test.
5. A longer half-life after heat shock would explain the rise; repeat in an RNase E temperature-sensitive mutant to test which nuclease is involved."""),
    ("biology", "methodology", 11, """1. Grow the strain in minimal medium with or without 0.5 mM hydrogen peroxide (sub-lethal oxidative stress); confirm the dose slows growth by less than 20%.
2. Run a fluctuation test: 40 parallel cultures per condition, each started from about 1000 cells and grown to saturation.
3. Plate each culture on rifampicin (100 µg/mL) agar to count resistant mutants, and plate dilutions on non-selective agar to count total cells.
4. Estimate the mutation rate from the distribution of mutant counts with the Ma-Sandri-Sarkar maximum likelihood method.
5. Compare the rates with a likelihood ratio test; include a catalase-overexpressing strain as a control that should abolish the increase.
6. Sequence rpoB in 20 mutants per condition to check whether the spectrum shifts toward G:C to T:A transversions typical of oxidative damage."""),
    ("chemistry", "hypothesis", 0, """1. Oxygen oxidises the phosphine ligand to phosphine oxide, leaving ligand-free palladium that aggregates into inactive palladium black. Prediction: 31P NMR shows phosphine oxide growing as turnover stops, and adding 2 extra equivalents of ligand restores activity.
2. Pd(0) is oxidised to a Pd(II) peroxo complex that is slow to re-enter the cycle. Prediction: running the reaction under argon keeps the rate constant for 10 times more turnovers.
3. Oxidative homocoupling of the boronic acid consumes it. Prediction: GC shows biaryl homocoupling product rising in air, and a second addition of boronic acid revives conversion."""),
    ("chemistry", "hypothesis", 4, """- H1: The dye has an intramolecular charge-transfer excited state that is more stabilised by the higher polarity of water. Prediction: across a solvent series, the emission maximum shifts linearly with the Lippert-Mataga polarity function, giving a large excited-state dipole.
- H2: Hydrogen bonding from water to the carbonyl acceptor lowers the excited state. Prediction: in ethanol-water mixtures the shift tracks water mole fraction non-linearly, and D2O gives a shift of a few nm.
- H3: The dye aggregates in water into J-aggregates. Prediction: the red-shifted band grows with dye concentration from 1 to 50 µM and disappears when a surfactant disperses the aggregates."""),
    ("chemistry", "hypothesis", 7, """1. Above 70 °C depropagation becomes significant because the polymerisation approaches its ceiling temperature. Prediction: the equilibrium monomer concentration, measured by NMR after long reaction times, rises steeply above 70 °C.
2. Faster initiator decomposition produces so many radicals that termination dominates and the initiator is exhausted early. Prediction: adding initiator in portions over time restores the rate at 90 °C.
3. The solvent or monomer boils or degasses near 80 °C, letting oxygen in to inhibit chains. Prediction: running in a sealed, degassed ampoule removes the drop between 70 and 90 °C."""),
    ("chemistry", "methodology", 0, """The preliminary doubling of rate with iodide already suggests first order in iodide; the design tests both reactants and temperature.
1. Follow O2 evolution with a gas burette or pressure sensor in a thermostatted flask at 25 °C.
2. Initial-rates series: vary [H2O2] from 0.1 to 0.8 M at fixed 0.02 M KI, then vary [KI] from 0.005 to 0.04 M at fixed 0.4 M H2O2; triplicate runs.
3. Plot log(initial rate) against log(concentration) to get each order; a blank without iodide measures background decomposition.
4. Repeat the rate-constant measurement at 15, 25, 35 and 45 °C and fit ln k against 1/T (Arrhenius) to obtain the activation energy with its standard error."""),
    ("chemistry", "methodology", 5, """1. Because the acid is poorly soluble in water, titrate it in methanol-water mixtures (30, 40, 50 and 60 wt% methanol) at 25.0 °C under nitrogen.
2. Calibrate the glass electrode in each mixture with standard buffers, and dissolve 1 mM of the acid with 0.15 M KCl as background electrolyte.
3. Titrate with 0.1 M KOH in 0.02 mL additions, recording pH after each; titrate potassium hydrogen phthalate the same way as a reference acid.
4. Fit the apparent pKa in each mixture from the titration curve, then extrapolate to 0% methanol with the Yasuda-Shedlovsky plot.
5. Confirm by UV-Vis spectrophotometric titration at 10 µM, where solubility is not limiting, and report the mean of 3 runs."""),
    ("chemistry", "methodology", 10, """The seasonal failure points to humidity: in summer more water reaches the magnesium or the ether.
1. Measure the water content of the ether by Karl Fischer titration on winter-like and summer days, and record lab humidity.
2. Run the Grignard under controlled conditions: dry ether (<50 ppm water) versus ether spiked to 200 and 500 ppm water, 5 runs each, same reagent batch.
3. Compare magnesium activated with iodine or 1,2-dibromoethane against untreated turnings, as oxide films also grow in humid air.
4. Record initiation time (onset of reflux or exotherm by thermocouple) and yield after quench; a run in a glovebox is the dry control.
5. If water content predicts failure, adopt drying over molecular sieves as the fix and verify it in a summer week."""),
    ("materials", "hypothesis", 1, """1. Dendrites grow along grain boundaries where the local ionic conductivity is higher and the electrolyte is mechanically weaker. Prediction: post-mortem microscopy shows lithium filling intergranular paths, and single-crystal or larger-grain electrolytes survive higher current density.
2. Electronic leakage through the electrolyte lets lithium nucleate inside it rather than only at the interface. Prediction: electrolytes with lower electronic conductivity, measured by DC polarisation, show a higher critical current density.
3. Surface flaws and pores concentrate stress, so fracture and not shear modulus controls penetration. Prediction: polished pellets with fewer surface cracks tolerate more cycling before a short circuit."""),
    ("materials", "hypothesis", 3, """**Hypothesis 1:** UV photons break backbone bonds (chain scission), lowering molecular weight until chains no longer entangle. Prediction: gel permeation chromatography shows number-average molecular weight falling with UV dose, and elongation at break drops once it crosses the entanglement threshold.

**Hypothesis 2:** Photo-oxidation forms carbonyl groups and a crosslinked, brittle surface layer. Prediction: the infrared carbonyl index rises with exposure, and surface cracks are confined to the top 50-100 µm seen in cross-section.

**Hypothesis 3:** UV stabiliser additives are consumed first. Prediction: samples with twice the stabiliser loading take about twice as long to embrittle in an accelerated weathering chamber."""),
    ("materials", "hypothesis", 7, """1. Grain boundary sliding takes over from dislocation motion below about 15 nm, so smaller grains give more sliding and softer copper. Prediction: hardness becomes strain-rate sensitive, with the rate-sensitivity exponent rising as grain size falls.
2. Grain boundary diffusion (Coble creep) allows room-temperature flow in the finest grains. Prediction: indentation creep displacement increases as grain size decreases, scaling with the inverse cube of grain size.
3. Samples with the smallest grains contain more porosity or impurities from processing. Prediction: density measurement and TEM reveal pores that, once accounted for, remove the softening trend."""),
    ("materials", "methodology", 0, """1. Deposit the ceramic coating at 2, 5 and 10 µm thickness on polished steel coupons; keep uncoated coupons as the substrate reference.
2. Make Vickers indentations at loads from 0.5 to 10 N and image the radial cracks by SEM to measure crack length.
3. Calculate fracture toughness with an indentation crack model corrected for substrate effects, checking that the indentation depth stays below 10% of the coating thickness.
4. As a second method, pull micro-cantilevers milled by focused ion beam and measure the critical load for a notched beam.
5. Report mean and standard deviation over at least 10 indents per thickness, and compare methods with a paired t-test."""),
    ("materials", "methodology", 4, """The intergranular fracture without corrosion suggests hydrogen embrittlement or temper embrittlement.
1. Examine fracture surfaces by SEM and check for intergranular facets with hairline features; section bolts for metallography to measure grain size and prior-austenite boundaries.
2. Measure diffusible hydrogen in failed and unused bolts by thermal desorption spectroscopy.
3. Run slow strain-rate tensile tests on unused bolts as received and after cathodic hydrogen charging; uncharged bolts are the control.
4. Use Auger electron spectroscopy on fresh fractures to detect phosphorus or tin segregation at grain boundaries, a sign of temper embrittlement.
5. Measure hardness; bolts above 39 HRC are known to be prone to hydrogen cracking."""),
    ("materials", "methodology", 9, """1. Machine compact-tension specimens (25 mm width) from the aluminium alloy plate in the same orientation; polish one face to follow the crack optically.
2. Pre-crack in fatigue at decreasing load to a 2 mm starter crack.
3. Cycle at R = 0.1 and 20 Hz in a servo-hydraulic machine, measuring crack length by compliance or potential drop every 1000 cycles.
4. Compute the stress intensity range from load and crack length, and da/dN by the secant method.
5. Plot da/dN against stress intensity range on log axes, fit the Paris law in the linear region, and run 3 specimens to report scatter; a load-shedding test locates the threshold."""),
    ("physics", "hypothesis", 1, """1. Weak localisation: electrons backscattered by disorder interfere constructively, raising resistance as phase coherence grows at low temperature. Prediction: a small perpendicular magnetic field reduces the resistivity (negative magnetoresistance), following a logarithmic temperature dependence.
2. Kondo scattering from magnetic impurities. Prediction: the rise scales with impurity concentration and is suppressed by a strong field; films made from purer targets show no rise.
3. Electron-electron interaction effects in a disordered film. Prediction: the conductance correction is logarithmic in temperature but barely changes with field, and the tunnelling density of states shows a dip at zero bias."""),
    ("physics", "hypothesis", 7, """Hypothesis 1: Each pillar reflects the clap, and echoes from successive pillars arrive at a steadily shorter interval relative to their distance, so the repetition rate of the reflections sets the pitch. Prediction: the echo frequency equals the speed of sound divided by twice the pillar spacing and falls as later echoes come from pillars at steeper angles.

Hypothesis 2: The row of pillars acts as a diffraction grating, sending different frequencies back at different delays. Prediction: changing the pillar spacing by 10% shifts the chirp frequencies by about 10%.

Test by recording the echo with a microphone and computing a spectrogram at several listening positions."""),
    ("physics", "hypothesis", 10, """1. Charging: an Auger process ejects an electron, and the charged dot is dark because non-radiative Auger recombination quenches emission. Prediction: the off-state fluorescence lifetime is shorter, and a thicker shell reduces the off time fraction.
2. Surface trap states capture carriers, with trapping governed by a distribution of tunnelling rates. Prediction: on and off times follow power-law distributions, and surface passivation changes the exponent.
3. Photoinduced charge transfer to the environment. Prediction: blinking depends on the surrounding medium, becoming rarer in an electron-donating matrix and more frequent at higher excitation intensity."""),
    ("physics", "methodology", 1, """1. Build a resonance tube or use two microphones a known distance apart in a sealed chamber filled with air, with a loudspeaker driven at 2 kHz.
2. Set temperature from 10 to 50 °C in 10 °C steps with a thermostatic bath, and relative humidity from 10% to 90% with a saturated salt solution or humidifier, reading both with a calibrated sensor.
3. Measure the time of flight of a short pulse between the microphones with an oscilloscope, averaging 50 pulses per setting.
4. Speed equals distance over time; compare with the ideal-gas prediction for dry air as the reference and fit the humidity correction.
5. Repeat each condition 3 times and propagate the uncertainties of distance and timing."""),
    ("physics", "methodology", 2, """1. Mount spheres of 5, 10, 20 and 50 mm diameter on a thin sting connected to a force balance in the water tunnel.
2. Vary flow speed from 0.05 to 2 m/s, giving Reynolds numbers from about 250 to 100000 with the available spheres; record water temperature to get viscosity.
3. Measure drag force for 30 s at each speed; subtract the force on the sting alone (tare run) as the control.
4. Compute the drag coefficient from force, density, speed and frontal area, with the blockage correction for the tunnel cross-section.
5. Plot the drag coefficient against Reynolds number, overlapping sizes at equal Reynolds numbers to check consistency, and repeat each point 3 times."""),
    ("physics", "methodology", 10, """1. Prepare surfactant solutions (for example SDS) from 0.1 to 20 mM in ultrapure water, including pure water as the reference.
2. Measure surface tension with a Wilhelmy plate tensiometer at 25.0 °C, letting each reading equilibrate for 5 min; flame-clean the platinum plate between samples.
3. Verify with the pendant drop method on a subset, fitting drop shape by image analysis.
4. Plot surface tension against log concentration; the break point gives the critical micelle concentration, and the slope before it gives the surface excess via the Gibbs equation.
5. Measure each concentration in triplicate and report mean with standard deviation."""),
]
