/* fake-engine simulator mode (sim.c): flag parsing and wiring of lib/enginesim, selected when
 * --http-bind-address is given. */
#ifndef FAKE_ENGINE_SIM_H
#define FAKE_ENGINE_SIM_H
int fake_engine_sim_main(int argc, char **argv);
#endif
